"""Issue 5: every training run is recorded in MLflow (a real SQLite store in a temp folder, a real
MindSpore run on tiny synthetic data): config, data, per-epoch and final metrics, baselines,
plots, the pyfunc model, provenance tags, and a status that is never left RUNNING."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import ROOT, tiny_overrides
from ids.artifact.scorer import PRED_LABEL, SCORE
from ids.config import compose
from ids.data import synthetic
from ids.data.flows import load_frame
from ids.data.prepare import prepare
from ids.evaluation.metrics import REPORT_METRICS
from ids.experiment.train import train
from ids.model.fit import NonFiniteLoss
from ids.tracking import store
from ids.tracking.registry import load_scorer
from world import mlflow_store

EPOCHS = 3
EPOCH_METRICS = ("train/loss", "val/loss", "val/f1", "val/mcc", "val/threshold")
PLOTS = {"loss", "val_metrics", "val_pr_curve", "test_pr_curve", "test_confusion",
         "val_threshold"}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tracked 3-epoch run on tiny synthetic data, shared by this module."""
    tmp = tmp_path_factory.mktemp("tracking")
    mlflow_store(tmp / "mlruns" / "mlflow.db")
    cfg = compose(tiny_overrides(tmp) + [f"trainer.epochs={EPOCHS}", "trainer.patience=0",
                                         "tracking.experiment=issue5"])
    records: list[dict] = []
    summary = train(cfg, on_epoch=lambda epoch, record: records.append(dict(record)))
    client = MlflowClient(tracking_uri=str(cfg.tracking.uri))
    run = client.get_run(summary["run_id"])
    return SimpleNamespace(tmp=tmp, cfg=cfg, summary=summary, records=records, client=client,
                           run=run, run_id=summary["run_id"], uri=str(cfg.tracking.uri))


def _artifact(t, path: str) -> Path:
    return Path(t.client.download_artifacts(t.run_id, path, str(t.tmp / "dl")))


def test_run_is_in_the_configured_store_and_experiment(tracked):
    t = tracked
    db = t.tmp / "mlruns" / "mlflow.db"
    assert t.uri == f"sqlite:///{db}" and db.is_file()
    exp = t.client.get_experiment_by_name("issue5")
    assert exp is not None and t.run.info.experiment_id == exp.experiment_id
    assert t.run.info.status == "FINISHED"
    assert [r.info.run_id for r in t.client.search_runs([exp.experiment_id])] == [t.run_id]
    # Artifacts stay beside the database, not wherever the tests were started from.
    assert t.run.info.artifact_uri.startswith((t.tmp / "mlruns").resolve().as_uri())


def test_resolved_config_is_logged_as_params_and_as_yaml(tracked):
    t = tracked
    resolved = OmegaConf.to_container(t.cfg, resolve=True)
    params = t.run.data.params
    expected = {k: v for k, v in store.flatten(resolved).items()
                if not k.startswith(("sweep.params.", "paper."))}
    assert len(expected) > 50
    for key, value in expected.items():
        assert params.get(key) == str(value)[:500], key
    assert params["model.kernel_size"] == "3" and params["data.window"] == "4"
    assert params["trainer.epochs"] == str(EPOCHS) and params["data.n_flows"] == "4000"
    assert params["data.seed"] == params["seed"] == "0"  # interpolations resolved
    logged = OmegaConf.load(_artifact(t, "config.yaml"))
    assert OmegaConf.to_container(logged, resolve=True) == resolved


def test_data_source_size_class_mix_and_hash_are_logged(tracked):
    t = tracked
    tags = t.run.data.tags
    prepared = prepare(t.cfg.data)
    frame = load_frame(t.cfg.data)
    assert tags["data.source"] == "synthetic"
    assert tags["data.n_flows"] == "4000" == str(len(frame))
    assert tags["data.split"] == "contiguous"
    assert re.fullmatch(r"[0-9a-f]{40}", tags["data.hash"])
    # A content hash: the same for the same flows, another one for other flows.
    assert tags["data.hash"] == prepared.info["hash"]
    other = prepare(compose(tiny_overrides(t.tmp) + ["data.seed=1"]).data)
    assert other.info["hash"] != tags["data.hash"]

    info = json.loads(_artifact(t, "data.json").read_text())
    assert info["source"] == "synthetic" and info["n_flows"] == 4000
    assert info["hash"] == tags["data.hash"]
    assert info["attack_counts"] == {str(k): int(v)
                                     for k, v in frame["Attack"].value_counts().items()}
    for split in ("train", "val", "test"):
        y = prepared.split(split).y
        assert info["counts"][split] == {"benign": int((y == 0).sum()),
                                         "attack": int((y == 1).sum())}


def test_class_mix_is_also_a_tag(tracked):
    tag = tracked.run.data.tags["data.class_mix"]
    frame = load_frame(tracked.cfg.data)
    for category, count in frame["Attack"].value_counts().items():
        assert re.search(rf"\b{category}\W+{count}\b", tag), (category, count, tag)


def test_one_metric_point_per_epoch_with_step_epoch(tracked):
    t = tracked
    n = t.summary["epochs_run"]
    assert n == EPOCHS == len(t.records)
    for key in EPOCH_METRICS:
        history = sorted(t.client.get_metric_history(t.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(1, n + 1)), key
        np.testing.assert_allclose([m.value for m in history], [r[key] for r in t.records],
                                   rtol=1e-6, err_msg=key)


def test_final_test_metrics_baselines_and_threshold_are_logged(tracked):
    t = tracked
    metrics, summary = t.run.data.metrics, t.summary
    assert summary["report_split"] == "test"
    for m in REPORT_METRICS:
        assert metrics[f"test/{m}"] == pytest.approx(summary["test"][m]), m
        for name in ("all_attack", "extra_trees"):
            assert metrics[f"baseline/test/{name}/{m}"] == pytest.approx(
                summary["baselines"][name][m]), (name, m)
    assert metrics["test/n"] == len(prepare(t.cfg.data).test.y)
    assert metrics["baseline/test/all_attack/recall"] == 1.0
    assert metrics["baseline/test/all_attack/benign_recall"] == 0.0
    # The tuned threshold is the best epoch's validation threshold.
    best = summary["best_epoch"]
    assert metrics["best_epoch"] == best
    assert metrics["threshold"] == pytest.approx(summary["threshold"])
    assert summary["threshold"] == t.records[best - 1]["val/threshold"]
    history = {m.step: m.value for m in t.client.get_metric_history(t.run_id, "val/threshold")}
    assert metrics["threshold"] == history[best]
    # The best epoch maximises the validation selection metric.
    metric = t.cfg.trainer.selection_metric
    curve = {m.step: m.value for m in t.client.get_metric_history(t.run_id, f"val/{metric}")}
    assert curve[best] == max(curve.values()) == metrics[f"val_best/{metric}"]


def test_plots_are_logged_as_images(tracked):
    t = tracked
    names = {Path(a.path).name for a in t.client.list_artifacts(t.run_id, "plots")}
    assert {f"{p}.png" for p in PLOTS} <= names, names
    for p in PLOTS:
        png = _artifact(t, f"plots/{p}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, p
    report = _artifact(t, "report.txt").read_text()
    assert "this run (test)" in report and "extra-trees" in report and "mcc" in report


def test_pyfunc_model_scores_raw_flows_like_the_in_process_model(tracked):
    t = tracked
    summary, cfg = t.summary, t.cfg
    prepared = prepare(cfg.data)
    # Raw flows as a published file holds them: written to CSV and read back, nothing prepared.
    raw = synthetic.generate(int(cfg.data.n_flows), int(cfg.data.seed), dict(cfg.data.class_mix))
    csv = t.tmp / "flows.csv"
    raw.to_csv(csv, index=False)
    flows = pd.read_csv(csv).iloc[prepared.test.rows].reset_index(drop=True)
    assert list(flows.columns) == synthetic.COLUMNS

    mlflow.set_tracking_uri(t.uri)  # models:/m-... resolves against the current store
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    out = model.predict(flows)
    assert list(out.columns) == [SCORE, PRED_LABEL] and len(out) == len(flows)
    assert out.index.equals(flows.index)
    # The test windows start at the test split's first flow, like the frame given to predict.
    np.testing.assert_allclose(out[SCORE].to_numpy(), summary["test_scores"], rtol=0, atol=1e-6)
    expected = (summary["test_scores"] >= summary["threshold"]).astype(np.int64)
    np.testing.assert_array_equal(out[PRED_LABEL].to_numpy(), expected)
    # Label and Attack are not needed to score new flows.
    unlabelled = model.predict(flows.drop(columns=["Label", "Attack"]))
    pd.testing.assert_frame_equal(unlabelled, out)
    # The Scorer behind the model carries the run's threshold and window.
    scorer = load_scorer(summary["model_uri"])
    assert scorer.threshold == pytest.approx(summary["threshold"])
    assert scorer.window == int(cfg.data.window)


def test_provenance_tags(tracked):
    tags = tracked.run.data.tags
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        assert tags["git.commit"] == head
        assert tags["git.dirty"] in ("true", "false")
    for pkg in ("mindspore", "mlflow", "optuna", "hydra-core", "numpy"):
        assert tags[f"version.{pkg}"] == metadata.version(pkg), pkg
    assert tags["host"] == socket.gethostname()


def test_the_runs_error_table_adds_up_to_both_logged_confusion_matrices(tracked):
    """errors.csv: the test flows per category and copies / unseen by who gets them wrong; its
    counts give back the model's and the logged Extra-Trees' confusion matrices (3 seeds: the
    median forest's, under today's keys)."""
    t = tracked
    metrics, tags = t.run.data.metrics, t.run.data.tags
    table = pd.read_csv(_artifact(t, "errors.csv"))
    assert list(table.columns) == ["category", "label", "part", "n", "both_right",
                                   "model_only", "extra_trees_only", "both_wrong"]
    benign, attack = table[table.label == "benign"], table[table.label == "attack"]
    assert len(benign) and len(attack) and table.n.sum() == metrics["test/n"]
    for who, own, other in (("test", "model_only", "extra_trees_only"),
                            ("baseline/test/extra_trees", "extra_trees_only", "model_only")):
        assert metrics[f"{who}/fp"] == (benign[own] + benign.both_wrong).sum()
        assert metrics[f"{who}/tn"] == (benign[other] + benign.both_right).sum()
        assert metrics[f"{who}/fn"] == (attack[own] + attack.both_wrong).sum()
        assert metrics[f"{who}/tp"] == (attack[other] + attack.both_right).sum()
    assert metrics["errors/test/model_only"] == table.model_only.sum()
    unseen = table[table.part == "unseen"]
    assert metrics["errors/test_unseen/n"] == unseen.n.sum() == metrics["test_unseen/n"]
    assert metrics["baseline/test/extra_trees_seeds/n"] == 3
    seed = int(metrics["baseline/test/extra_trees_seeds/median_seed"])
    assert metrics["baseline/test/extra_trees/mcc"] == metrics[
        f"baseline/test/extra_trees_seed_{seed}/mcc"]
    assert tags["verdict.test.vs_extra_trees"] == tags[f"verdict.test.vs_extra_trees.seed_{seed}"]
    report = _artifact(t, "report.txt").read_text()
    assert "extra-trees over 3 seeds, MCC on all test flows: median" in report
    assert f"where the model and extra-trees (seed {seed}) differ on the" in report


def test_a_standalone_run_keeps_its_baselines_and_gets_a_summary(tracked):
    """Not a sweep trial: the baselines are on the run itself (trials share their parent's,
    tests/test_run_view.py), and the summary line names the test value."""
    run = tracked.run.data
    summary = tracked.summary
    assert run.metrics["baseline/test/extra_trees/mcc"] == summary["baselines"]["extra_trees"]["mcc"]
    assert "baselines.run_id" not in run.tags
    assert f"test mcc {summary['test']['mcc']:.4f}" in run.tags["summary"]


# --- runs that do not finish normally end FAILED or KILLED, never RUNNING ---------------------

def _only_run(tracked, experiment: str):
    exp = tracked.client.get_experiment_by_name(experiment)
    runs = tracked.client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def _short_cfg(tracked, experiment: str, *extra: str):
    # Same store as the module's run (already migrated), its own experiment.
    return compose(tiny_overrides(tracked.tmp) + ["trainer.epochs=2", "trainer.baselines=false",
                                                  f"tracking.experiment={experiment}", *extra])


def _raise_at_epoch_1(exc: BaseException):
    def on_epoch(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise exc
    return on_epoch


def test_a_crash_during_training_ends_the_run_failed(tracked):
    cfg = _short_cfg(tracked, "crash")
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg, on_epoch=_raise_at_epoch_1(RuntimeError("boom")))
    run = _only_run(tracked, "crash")
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert "RuntimeError: boom" in run.data.tags["error"]
    # What was logged before the crash stays: epoch 1 and its metrics.
    assert [m.step for m in tracked.client.get_metric_history(run.info.run_id, "val/f1")] == [1]
    assert mlflow.active_run() is None


def test_an_interrupted_run_ends_killed(tracked):
    cfg = _short_cfg(tracked, "interrupted")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch=_raise_at_epoch_1(KeyboardInterrupt()))
    run = _only_run(tracked, "interrupted")
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None
    assert mlflow.active_run() is None


def test_a_diverging_run_raises_non_finite_loss_and_ends_failed(tracked):
    cfg = _short_cfg(tracked, "diverged", "trainer.lr=3e38")
    with pytest.raises(NonFiniteLoss, match=r"epoch 1: .*trainer\.lr"):
        train(cfg)
    run = _only_run(tracked, "diverged")
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("NonFiniteLoss: epoch 1")
    assert mlflow.active_run() is None
