"""The sweep on tiny data: real Optuna SQLite storage, real MLflow store, real training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import ROOT, patience, run_cli, tiny_overrides
from ids.config import compose
from ids.tuning.space import SpaceError
from ids.tuning.study import FINISHED, SweepError, open_study
from ids.tuning.sweep import sweep
from world import WORLD_POINT, mlflow_store, runs_of, sweep_cfg


@pytest.fixture
def study_dir(world):
    """The session's 3-trial study (tests/world.py), for the tests that only read it."""
    return world.tmp, world.cfg, world.summary


def test_study_trials_are_in_storage_and_children_of_one_parent(study_dir):
    _, cfg, summary = study_dir
    study = open_study(cfg)
    finished = [t for t in study.trials if t.state in FINISHED]
    assert len(finished) == 3
    client, parents, children = runs_of(cfg)
    assert len(parents) == 1
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["trial.number"]) for c in children) == [0, 1, 2]
    for trial in finished:
        child = next(c for c in children if c.data.tags["trial.number"] == str(trial.number))
        assert child.data.tags["trial.state"] == trial.state.name
        assert child.info.status == "FINISHED"
        assert child.data.params["model.kernel_size"] == str(trial.params["model.kernel_size"])
        history = client.get_metric_history(child.info.run_id, "val/f1")
        assert [m.step for m in history] == [1, 2]
    # The parent holds the best trial and the study's plots and table.
    assert parent.data.tags["best.trial"] == str(summary["best_number"])
    assert parent.data.metrics["best/value"] == pytest.approx(study.best_value)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/intermediate_values.png"} <= names
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"trials.csv",
                                                                           "best.yaml"}
    # The objective is the validation metric of the trial's best epoch, never a test metric.
    best_child = client.get_run(parent.data.tags["best.run_id"])
    metric = cfg.trainer.selection_metric
    assert best_child.data.metrics[f"val_best/{metric}"] == pytest.approx(study.best_value)
    assert not any(k.startswith("test/") for k in best_child.data.metrics)


def test_resume_adds_only_the_missing_trials_and_never_repeats_start_points(world_copy):
    """The world's study began with its start point (trial 0). The same command again adds
    nothing; a larger n_trials adds only the difference, and enqueues nothing again."""
    cfg = world_copy.cfg
    first = open_study(cfg).trials[0]
    assert first.params == WORLD_POINT and first.state == TrialState.COMPLETE
    before = len(open_study(cfg).trials)
    sweep(cfg)
    assert len(open_study(cfg).trials) == before
    _, parents, children = runs_of(cfg)
    assert len(parents) == 1 and len(children) == before

    cfg.sweep.n_trials = 4
    sweep(cfg)
    study = open_study(cfg)
    assert sum(t.state in FINISHED for t in study.trials) == 4
    _, parents, children = runs_of(cfg)
    assert len(parents) == 1 and len(children) == len(study.trials)
    assert ["fixed_params" in t.system_attrs for t in study.trials] == [True, False, False, False]


def test_best_yaml_reruns_to_the_same_validation_value(study_dir, tmp_path, monkeypatch):
    _, cfg, _ = study_dir
    best = open_study(cfg).best_trial
    best_yaml = Path(cfg.sweep.export_dir) / str(cfg.sweep.study) / "best.yaml"
    text = best_yaml.read_text()
    assert f"+{cfg.sweep.study}=best" in text and f"Best trial {best.number} " in text
    uri = mlflow_store(tmp_path / "rerun.db")
    run_cli(monkeypatch, "ids.run", "--config-dir", str(cfg.sweep.export_dir),
            f"+{cfg.sweep.study}=best", f"tracking.uri={uri}", "tracking.log_model=false",
            "tracking.log_plots=false", "trainer.evaluate_test=false", "quiet=true",
            f"cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/hydra")
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("ids").experiment_id])[0]
    for key, value in best.params.items():
        assert run.data.params[key] == str(value)
    metric = cfg.trainer.selection_metric
    assert run.data.metrics[f"val_best/{metric}"] == pytest.approx(best.value, abs=1e-9)


def test_failing_trial_does_not_stop_the_study(tmp_path):
    # window 2000 is longer than the val and test splits of 4000 flows (600 each): those trials
    # fail with DataError (a window that does not fit in memory is refused before the sweep).
    space = {"data.window": {"type": "categorical", "choices": [2, 2000]},
             "model.kernel_size": {"type": "int", "low": 2, "high": 3}}
    cfg = sweep_cfg(tmp_path, "sweep.n_trials=2", "sweep.sampler=random", "trainer.epochs=1",
                    params=space)
    sweep(cfg)
    study = open_study(cfg)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert sum(t.state in FINISHED for t in study.trials) == 2
    assert failed, "the random sampler with seed 0 draws window=2000 at least once"
    assert all("data.window" in t.user_attrs["fail_reason"] for t in failed)
    _, _, children = runs_of(cfg)
    states = {c.data.tags["trial.number"]: (c.data.tags["trial.state"], c.info.status)
              for c in children}
    for t in failed:
        assert states[str(t.number)] == ("FAIL", "FAILED")


def test_pruner_prunes_and_the_child_run_says_so(tmp_path):
    cfg = sweep_cfg(tmp_path, "sweep.n_trials=2", "sweep.pruner=threshold",
                    "+sweep.pruner_args.lower=1.1", "trainer.epochs=3",
                    "sweep.pruner_warmup_epochs=0")
    summary = sweep(cfg)
    study = open_study(cfg)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert summary["n_pruned"] == 2 and summary["pruned_at"] == {1: 2}
    _, _, children = runs_of(cfg)
    assert len(children) == 2
    for c in children:
        assert c.data.tags["trial.state"] == "PRUNED"
        assert c.data.tags["trial.pruned_epoch"] == "1"
        assert c.info.status == "FINISHED"


@pytest.mark.parametrize(
    "params, match",
    [
        ({"model.not_a_key": {"type": "int", "low": 1, "high": 2}}, "not a config key"),
        ({"model.kernel_size": {"type": "int", "low": 5, "high": 2}}, "low <= high"),
        ({"model.lstm_units": {"type": "categorical", "choices": []}}, "non-empty"),
        ({"model.dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "model.dropout"),
        ({"model.kernel_size": {"type": "integer", "low": 1, "high": 2}}, "type must be"),
        ({"trainer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "low > 0"),
        ({"model.lstm_units": {"type": "int", "low": 8, "high": 1_000_000}}, "GiB of memory"),
    ],
)
def test_bad_space_stops_before_any_trial(tmp_path, params, match):
    cfg = sweep_cfg(tmp_path, params=params)
    with pytest.raises(SpaceError, match=match):
        sweep(cfg)
    assert not (tmp_path / "sweeps" / "optuna.db").exists()
    assert runs_of(cfg)[1:] == ([], [])


def test_champion_breaks_ties_by_validation_loss_then_trial_number():
    import optuna

    from ids.tuning.study import champion

    study = optuna.create_study(direction="maximize")
    for value, loss in [(0.90, 0.01), (0.97, 0.05), (0.97, 0.02), (0.97, 0.02), (0.96, 0.001)]:
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"val_loss": loss}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    assert study.best_trial.number == 1  # Optuna alone: the first of the tied trials
    assert champion(study).number == 2  # lower val loss; trial 3 ties it, the lower number wins
    empty = optuna.create_study(direction="maximize")
    with pytest.raises(ValueError, match="no COMPLETE trial"):
        champion(empty)


@pytest.mark.parametrize("point, match", [
    ({"model.filters": 8}, "not a key of sweep.params"),
    ({"model.kernel_size": 9}, r"outside the space \(int in \[2, 4\]\)"),
    ({"data.window": 3}, r"outside the space \(one of \[1, 4\]\)"),
    ({"model.kernel_size": 2.5}, "outside the space"),
])
def test_bad_start_point_stops_before_any_trial(tmp_path, point, match):
    cfg = sweep_cfg(tmp_path)
    cfg.sweep.start_points = [point]
    with pytest.raises(SpaceError, match=match):
        sweep(cfg)
    assert not (tmp_path / "sweeps" / "optuna.db").exists()


@pytest.mark.parametrize("url", ["notadb://x", "postgresql://nobody@127.0.0.1:1/none"])
def test_bad_storage_stops_before_any_trial(tmp_path, url):
    cfg = sweep_cfg(tmp_path, f"sweep.storage={url}")
    with pytest.raises(SweepError, match="sweep.storage"):
        sweep(cfg)
    assert runs_of(cfg)[1:] == ([], [])


def _sweep_cmd(tmp: Path, *extra: str) -> list[str]:
    space = "{" + ",".join(f"{k}:{{type:categorical,choices:[{v}]}}" for k, v in
                           [("model.kernel_size", "2,3"), ("data.window", "2,4")]) + "}"
    return [sys.executable, "-m", "ids.sweep", *tiny_overrides(tmp), "sweep.heartbeat_seconds=2",
            "trainer.baselines=false", f"sweep.params={space}", f"hydra.run.dir={tmp}/hydra",
            *extra]


@pytest.mark.slow
def test_worker_killed_mid_trial_then_resume_loses_and_doubles_nothing(tmp_path):
    extra = ["sweep.n_trials=3", "trainer.epochs=4", "data.n_flows=20000"]
    proc = subprocess.Popen(_sweep_cmd(tmp_path, *extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    cfg = compose(tiny_overrides(tmp_path) + ["sweep.heartbeat_seconds=2", *extra])
    storage = tmp_path / "sweeps" / "optuna.db"
    deadline = time.time() + patience(240)
    try:
        while time.time() < deadline:  # kill once a trial runs after one has finished
            time.sleep(0.5)
            if storage.exists():
                try:
                    trials = open_study(cfg).trials
                except Exception:  # noqa: BLE001 - the worker may still be creating the study
                    continue
                states = [t.state for t in trials]
                if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING:
                    running = str(trials[-1].number)  # and its MLflow run has started
                    if any(c.data.tags.get("trial.number") == running
                           for c in runs_of(cfg)[2]):
                        break
        else:
            pytest.fail("the worker never started a second trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = open_study(cfg).trials[-1].number
    time.sleep(5)  # past the heartbeat grace period (2 x 2 s)
    out = subprocess.run(_sweep_cmd(tmp_path, *extra), cwd=ROOT, capture_output=True,
                         text=True, timeout=patience(600))
    assert out.returncode == 0, out.stderr[-3000:]
    study = open_study(cfg)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert sum(t.state in FINISHED for t in study.trials) == 3
    assert study.trials[killed].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].params == study.trials[killed].params
    _, parents, children = runs_of(cfg)
    assert len(parents) == 1
    by_trial = {}
    for c in children:
        by_trial.setdefault(c.data.tags["trial.number"], []).append(c)
    assert all(len(v) == 1 for v in by_trial.values())
    assert by_trial[str(killed)][0].info.status == "KILLED"
    assert not [c for c in children if c.info.status == "RUNNING"]


@pytest.mark.slow
def test_two_workers_share_one_study_exactly(tmp_path):
    out = subprocess.run(_sweep_cmd(tmp_path, "sweep.n_trials=4", "sweep.workers=2",
                                    "trainer.epochs=1"),
                         cwd=ROOT, capture_output=True, text=True, timeout=patience(600))
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = compose(tiny_overrides(tmp_path))
    study = open_study(cfg)
    assert sum(t.state in FINISHED for t in study.trials) == 4
    _, parents, children = runs_of(cfg)
    assert len(parents) == 1
    finished = {str(t.number) for t in study.trials if t.state in FINISHED}
    assert finished <= {c.data.tags["trial.number"] for c in children}
    assert OmegaConf.select(cfg, "sweep.workers") == 1  # the composed default is untouched
    assert "[w1]" in out.stdout and "[w0]" in out.stdout
    # The data was prepared once, by the sweep's own process; both workers loaded it from disk.
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    prepared_by = str(json.loads((entries[0] / "meta.json").read_text())["prepared_by"])
    loads = (entries[0] / "loads.log").read_text().split()
    assert len(set(loads)) == 2 and prepared_by not in loads


@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml")))
def test_every_sweep_preset_composes_and_its_space_is_valid(preset):
    """A preset is only found broken when someone selects it: compose each one here."""
    from ids.tuning.space import check_space, check_start_points

    data = {"nf_bot_iot": "nf_bot_iot", "nf_v3": "nf_v3"}.get(preset, "synthetic")  # its data
    cfg = compose([f"sweep={preset}", f"data={data}"])
    check_space(cfg)
    check_start_points(cfg)
    assert cfg.sweep.params
