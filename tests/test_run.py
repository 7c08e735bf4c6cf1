"""Issue 4: `ids.run` - bad configs are rejected before training (key named, nothing recorded),
`python -m ids.run +experiment=paper` runs end to end on the real sample and prints the paper /
this run / baselines report, a missing dataset gets a helpful message, and a terminated run is
not left RUNNING in MLflow."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import ROOT, patience, run_cli_status, tiny_overrides
from ids.config import ConfigError, compose, validate
from ids.data.flows import PUBLISHED, DataError
from ids.experiment.train import train
from world import mlflow_store

PYTHON = sys.executable


# --- unknown keys and invalid values -----------------------------------------------------------

@pytest.mark.parametrize("override", ["model.foo=1", "trainer.epoch=3", "foo=1",
                                      "data.windows=5"])
def test_unknown_keys_fail_at_compose_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=re.escape(key)):
        compose([override])


def test_a_composed_config_is_the_callers_own_and_reads_the_environment_when_used(monkeypatch):
    """compose() composes each override list once per process: every call still gets a config
    of its own, and `${oc.env:...}` values follow the environment of the moment they are read."""
    first = compose(["model.lstm_units=8"])
    first.model.lstm_units = 99
    first.data.class_mix.Benign = 0.5  # a nested node too
    again = compose(["model.lstm_units=8"])
    assert again.model.lstm_units == 8 and again.data.class_mix.Benign != 0.5
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert compose(["model.lstm_units=8"]).tracking.uri == "sqlite:////tmp/elsewhere.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert compose(["model.lstm_units=8"]).tracking.uri == "sqlite:///mlruns/mlflow.db"
    with pytest.raises(ConfigCompositionException, match="model.foo"):
        compose(["model.foo=1"])  # an error is raised again, not remembered as a config
    with pytest.raises(ConfigCompositionException, match="model.foo"):
        compose(["model.foo=1"])


@pytest.mark.parametrize("override", ["+trainer.epoch=3", "+model.foo=1", "+foo=1"])
def test_appended_unknown_keys_are_rejected_naming_the_key(override):
    key = override.lstrip("+").split("=")[0]
    with pytest.raises((ConfigCompositionException, ConfigError), match=re.escape(key)):
        validate(compose([override]))


@pytest.fixture(scope="module")
def base_cfg():
    cfg = compose([])
    validate(cfg)
    return cfg


@pytest.mark.parametrize(("key", "value"), [
    ("model.dropout", "1.0"),
    ("model.dropout", "-0.1"),
    ("model.kernel_size", "0"),
    ("model.pool_size", "0"),
    ("model.filters", "0"),
    ("model.lstm_units", "0"),
    ("model.conv_layers", "-1"),
    ("data.window", "0"),
    ("data.n_flows", "10"),
    ("data.split", "random"),
    ("data.split_fractions", "[0.5,0.5]"),
    ("trainer.epochs", "0"),
    ("trainer.lr", "0"),
    ("trainer.batch_size", "0"),
    ("trainer.patience", "-1"),
    ("trainer.class_weight", "inverse"),
    ("trainer.selection_metric", "auc"),
    ("trainer.mode", "eager"),
    ("trainer.weight_decay", "-0.1"),
    ("data.l7_top_k", "-1"),
    ("data.max_rows", "-5"),
])
def test_invalid_values_are_rejected_naming_the_key(base_cfg, key, value):
    cfg = base_cfg.copy()
    OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)  # typed like an override
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(cfg)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A migrated, empty MLflow store: a rejected config must leave it without runs."""
    return mlflow_store(tmp_path_factory.mktemp("store") / "mlruns" / "mlflow.db")


def _all_runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exp_ids) if exp_ids else []


def _never_trains(epoch: int, record: dict) -> None:
    raise AssertionError(f"epoch {epoch} ran: the config should have been rejected first")


@pytest.mark.parametrize("override", ["model.dropout=1.0", "model.kernel_size=0",
                                      "data.window=0", "data.window=700",
                                      "+trainer.epoch=3"])
def test_rejected_config_records_no_run(tmp_path, store, override):
    key = override.lstrip("+").split("=")[0]
    cfg = compose(tiny_overrides(tmp_path) + [f"tracking.uri={store}", override,
                                              "tracking.experiment=rejected"])
    with pytest.raises((ConfigError, DataError), match=re.escape(key)):
        train(cfg, on_epoch=_never_trains)  # rejected up front, before any epoch
    assert _all_runs(store) == []
    assert MlflowClient(tracking_uri=store).get_experiment_by_name("rejected") is None


def test_window_longer_than_a_split_names_the_split(tmp_path):
    cfg = compose(tiny_overrides(tmp_path) + ["data.window=700", "tracking.enabled=false"])
    with pytest.raises(DataError, match=r"data\.window=700 is longer than the (val|test) split "
                                        r"\(600 flows\)"):
        train(cfg)


# --- python -m ids.run -------------------------------------------------------------------------

def _ids_run(tmp_path, monkeypatch, capsys, *overrides: str) -> tuple[int, str, str]:
    """`python -m ids.run` in this process: (exit code, stdout, stderr)."""
    return run_cli_status(monkeypatch, capsys, "ids.run", *overrides,
                          f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
                          f"cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/hydra")


def _row(report: str, metric: str) -> list[str]:
    return next(line.split()[1:] for line in report.splitlines()
                if line.split()[:1] == [metric])


def test_paper_experiment_end_to_end_on_the_real_sample(tmp_path, v1_sample, monkeypatch,
                                                        capsys):
    mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    code, out, err = _ids_run(tmp_path, monkeypatch, capsys, "+experiment=paper",
                              f"data.path={v1_sample}", "trainer.epochs=1", "data.max_rows=20000")
    assert code == 0, err[-3000:]
    for text in ("paper (claimed)", "this run", "extra-trees", "all-attack", "mcc",
                 "benign_recall"):
        assert text in out, text
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.index("paper (claimed)") < header.index("this run") < header.index(
        "extra-trees")
    # The paper's claimed figures (accuracy/precision/recall/F1 0.99), none for MCC.
    for metric in ("accuracy", "precision", "recall", "f1"):
        assert _row(out, metric)[0] == "0.9900", metric
    mcc = _row(out, "mcc")  # paper, then "value [low, high]" for this run and each baseline
    assert mcc[0] == "-" and mcc[4:7] == ["0.000", "[0.000,", "0.000]"]  # all-attack: MCC 0
    assert float(mcc[2].strip("[,")) <= float(mcc[1]) <= float(mcc[3].strip("]"))
    for text in ("copies of a training flow", "unseen:", "MCC difference on all test flows",
                 "flows close in time are not independent"):
        assert text in out, text

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("paper")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id in out
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["data.source"] == "nf_bot_iot" and tags["data.path"] == str(v1_sample)
    assert tags["data.layout"] == "v1" and tags["data.n_flows"] == "20000"
    assert run.data.params["trainer.epochs"] == "1"
    assert f"{metrics['test/mcc']:.3f}" == mcc[1]
    assert f"{metrics['test/mcc_ci_low']:.3f}" == mcc[2].strip("[,")
    assert f"{metrics['baseline/test/extra_trees/mcc']:.3f}" == mcc[7]
    assert metrics["test/n"] == metrics["test_unseen/n"] + metrics["test_copies/copies"]
    assert tags["verdict.test.vs_extra_trees"] in ("better", "worse", "no evidence either way")
    # Why it loses (or wins): three forests, the median one's errors set against the model's.
    seed = int(metrics["baseline/test/extra_trees_seeds/median_seed"])
    assert f"the error table use seed {seed}'s forest, the median draw" in out
    assert "against each seed's forest: seed 0 " in out
    wrong = metrics["test/fp"] + metrics["test/fn"]
    assert metrics["errors/test/model_only"] + metrics["errors/test/both_wrong"] == wrong
    assert f"model wrong, extra-trees right: {metrics['errors/test/model_only']:,.0f} flow" in out


def test_missing_dataset_says_how_to_get_it_without_traceback(tmp_path, monkeypatch, capsys):
    code, out, err = _ids_run(tmp_path, monkeypatch, capsys, "+experiment=paper",
                              "data.path=/nonexistent.csv")
    assert code == 2  # the one error path: one line, no traceback
    assert "Traceback" not in out + err
    assert "/nonexistent.csv" in err
    assert PUBLISHED in err  # where NF-BoT-IoT is published (UQ)
    assert "data=synthetic" in err  # the same without a download
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing recorded


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_ends_the_run_killed_not_running(tmp_path, sig):
    db = tmp_path / "mlruns" / "mlflow.db"
    cmd = [PYTHON, "-m", "ids.run", *tiny_overrides(tmp_path), "trainer.epochs=500",
           "trainer.patience=0", f"hydra.run.dir={tmp_path}/hydra"]
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline, epochs = time.monotonic() + patience(90), 0
        while not epochs:  # wait for epoch 1 to be logged: the run is RUNNING, mid-training
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    epochs = con.execute("SELECT COUNT(*) FROM metrics m JOIN runs r ON "
                                         "m.run_uuid = r.run_uuid WHERE m.key = 'train/loss' "
                                         "AND r.status = 'RUNNING'").fetchone()[0]
            except sqlite3.Error:  # not created or still migrating
                epochs = 0
        proc.send_signal(sig)
        proc.wait(timeout=patience(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("ids").experiment_id])
    assert run.info.status == "KILLED", (run.info.status, run.data.tags.get("error"))
    assert run.info.end_time is not None
