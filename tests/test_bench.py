"""`python -m ids.tools.bench --quick` runs and reports every figure, in the table and in MLflow.

No timing is asserted (other jobs share the machine): only that each figure is there and finite,
plus the properties that are not timings (window views add no bytes, the data cache is hit).
"""

from __future__ import annotations

import json
import math
import os

import pytest
from mlflow.tracking import MlflowClient

from ids.tools import bench
from ids.tools.bench_hw import forward_flops, train_flops
from ids.tools.bench_profile import phase_of
from world import mlflow_store

DATA = ["data.flows", "data.load_seconds", "data.preprocess_seconds", "data.window_seconds",
        "data.total_seconds", "data.peak_rss_mb", "data.step_rss_mb",
        "data.cached_prepare_seconds", "data.cache_hit", "data.windows_cached"] + [
    f"data.T{T}.{k}" for T in (10, 100)
    for k in ("features_mb", "padded_base_mb", "view_extra_bytes", "materialised_mb")]
TRAIN = [f"{kind}.{mode}.bs{bs}.{k}" for mode in ("graph", "pynative")
         for kind, sizes in (("train", (256, 1024)), ("infer", (4096,))) for bs in sizes
         for k in ("windows_per_s", "compile_seconds")] + ["train.graph_vs_pynative.bs256"] + [
    f"train.graph.bs{bs}.of_sgemm_peak" for bs in (256, 1024)] + [
    "hw.sgemm_gflops", "hw.train_mflop_per_window", "profile.step_ms",
    "profile.host_other_ms_per_step"] + [
    f"profile.{p}_ms_per_step" for p in ("forward", "backward", "optimizer")]
THREADS1 = ["train.graph.bs256.threads1.windows_per_s", "train.graph.bs256.threads1.compile_seconds",
            "infer.graph.bs4096.threads1.windows_per_s",
            "infer.graph.bs4096.threads1.compile_seconds", "train.threads1_vs_default.bs256"]
TRIAL = [f"trial.{t}.{k}" for t in ("first", "next", "pruned", "bare")
         for k in ("total_seconds", "data_seconds", "compile_seconds", "train_seconds",
                   "eval_seconds", "baselines_seconds", "tracking_other_seconds", "epochs",
                   "training_share")] + [
    "trial.next.data_reused", "trial.pruned_vs_complete", "trial.plots_model_seconds",
    "trial.plots_model_share"]
SERVE = [f"serve.file.{k}" for k in ("flows_per_s", "flows", "startup_seconds", "windows_computed",
                                     "windows_looked_up", "no_memo.flows_per_s", "memo_vs_none")
         ] + ["serve.stream.p50_ms", "serve.http.1flow.c4.rps", "serve.http.long16.errors"]
DISTINCT = [f"distinct.w{w}.{m}.{k}" for w in (1, 10) for m in ("off", "auto", "on")
            for k in ("epoch_seconds", "trial_seconds", "steps_per_epoch", "val_mcc")] + [
    f"distinct.w{w}.{m}_vs_off.{k}" for w in (1, 10) for m in ("auto", "on")
    for k in ("epoch", "trial")]
EXPECTED = DATA + TRAIN + TRIAL + SERVE + DISTINCT + ["bench.seconds"] + (
    THREADS1 if (os.cpu_count() or 1) > 1 else [])


def test_parse_args_splits_bench_options_from_hydra_overrides():
    args, overrides = bench.parse_args(["--quick", "model.filters=8", "--repeat", "3"])
    assert args.quick and args.repeat == 3 and overrides == ["model.filters=8"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--no-such-option"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--twin", "python3", "--twin-script", "/no/such/twin.py"])


def test_flops_are_counted_from_the_layer_shapes():
    """Default model, T=10, 31 features: conv 2*10*31*64*3 + 2*5*64*64*3, pooled to length 2,
    BiLSTM 2 directions * 2 steps * 2*4*64*(64+64), dense 2*128; training = 3 x forward."""
    from ids.config import compose

    model = compose([]).model
    expected = 2 * 10 * 31 * 64 * 3 + 2 * 5 * 64 * 64 * 3 + 2 * 2 * 2 * 4 * 64 * 128 + 2 * 128
    assert forward_flops(31, 10, model) == expected
    assert train_flops(31, 10, model) == 3 * expected
    model.conv_layers = 0
    assert forward_flops(31, 1, model) == 2 * 2 * 4 * 64 * (31 + 64) + 2 * 128


def test_profiler_kernels_are_split_into_forward_backward_optimizer():
    assert phase_of("Default/network-WeightedLoss/model-CNNBiLSTM/lstm-LSTM/LSTM-op0") == "forward"
    assert phase_of("Gradients/Default/network-WeightedLoss/Grad_Mul/Mul-op0") == "backward"
    assert phase_of("Expand/_BinaryCrossEntropyWithLogitsBackward/Mul-op1") == "backward"
    assert phase_of("Default/optimizer-Adam/Adam-op2") == "optimizer"


def test_quick_bench_data_section_reports_its_figures(tmp_path, capsys):
    """The fast suite runs one section; the whole quick bench is the `slow` test below."""
    out = bench.run_bench(["--quick", "--sections", "data", "tracking.enabled=false"])
    values = out["values"]
    missing = [k for k in DATA if k not in values]
    assert not missing, f"figures missing: {missing}"
    assert all(math.isfinite(values[k]) for k in DATA)
    assert values["data.T10.view_extra_bytes"] == values["data.T100.view_extra_bytes"] == 0
    assert values["data.cache_hit"] == values["data.windows_cached"] == 1
    printed = capsys.readouterr().out
    assert all(k in printed for k in DATA)


@pytest.mark.slow  # every section, with training, profiling and four trials: minutes
def test_quick_bench_reports_every_figure_and_logs_it(tmp_path, capsys, v1_sample):
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    out = bench.run_bench(["--quick", f"tracking.uri={uri}", "--json", str(tmp_path / "b.json"),
                           "--distinct-data", str(v1_sample)])  # the tests run in a temp folder
    values = out["values"]

    missing = [k for k in EXPECTED if k not in values]
    assert not missing, f"figures missing: {missing}"
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    assert not bad, f"figures not finite: {bad}"
    printed = capsys.readouterr().out
    assert all(k in printed for k in EXPECTED)  # every figure is a row of the printed table
    # Properties, not timings: windows are views, prepared data is reused.
    assert values["data.T10.view_extra_bytes"] == values["data.T100.view_extra_bytes"] == 0
    assert values["data.cache_hit"] == values["data.windows_cached"] == 1
    assert values["trial.next.data_reused"] == 1
    assert values["serve.file.windows_computed"] + values["serve.file.windows_looked_up"] <= \
        values["serve.file.flows"]
    assert values["trial.pruned.epochs"] == 1
    assert 0 < values["train.graph.bs256.of_sgemm_peak"]  # a ratio to the machine, same run
    assert "forward" in out["profile"] and "backward" in out["profile"]  # the step's breakdown
    assert json.loads((tmp_path / "b.json").read_text())["values"].keys() == values.keys()

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench")
    assert exp is not None
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == exp.experiment_id
    metrics = run.data.metrics
    assert not [k for k in values if k not in metrics]
    assert all(math.isfinite(metrics[k]) and metrics[k] == pytest.approx(values[k])
               for k in values)
    for key in ("cpu_model", "cores_logical", "memory_gb", "python", "mindspore",
                "onednn_max_cpu_isa"):
        assert run.data.params[f"machine.{key}"]
    assert run.data.params["machine.onednn_max_cpu_isa"] == os.environ["ONEDNN_MAX_CPU_ISA"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"bench.txt", "bench.json", "profile.txt"} <= artifacts
    children = client.search_runs([exp.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == [
        "bench-trial-bare", "bench-trial-first", "bench-trial-next", "bench-trial-pruned"]
