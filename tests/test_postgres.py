"""Scale-out on real servers: two independent `python -m ids.sweep` commands, as on two machines,
share one Optuna study on PostgreSQL and one MLflow experiment on a tracking server whose
backend store is PostgreSQL. Skipped only where PostgreSQL is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import ROOT, patience, tiny_overrides
from ids.config import compose
from ids.tools import servers

pytestmark = pytest.mark.slow  # starts servers (PostgreSQL, MLflow) and sweep processes

N_TRIALS = 4
STUDY = "scale-out"


@pytest.fixture(scope="module")
def team():
    """PostgreSQL (databases optuna, mlflow) and an MLflow server, both on 127.0.0.1."""
    try:
        servers.pg_bin_dir()
    except servers.ServerError as exc:
        pytest.skip(str(exc))
    # Under /tmp, not pytest's 0700 folder: as root the cluster runs as user postgres.
    data_dir = Path(tempfile.mkdtemp(prefix="ids-test-pg-"))
    work = Path(tempfile.mkdtemp(prefix="ids-test-mlflow-"))
    pg = mlf = None
    try:
        pg = servers.start_postgres(data_dir, port=servers.free_port())
        mlf = servers.start_mlflow(pg.uri("mlflow"), work / "artifacts", port=servers.free_port(),
                                   workers=1, log=work / "mlflow.log", password=pg.password)
        yield pg, mlf, work
    finally:
        if mlf is not None:
            mlf.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _sweep_overrides(tmp_path: Path, storage: str, tracking_uri: str,
                     study: str = STUDY) -> list[str]:
    replaced = ("tracking.uri=", "sweep.storage=", "sweep.export_dir=", "trainer.epochs=")
    return [o for o in tiny_overrides(tmp_path) if not o.startswith(replaced)] + [
        "trainer.epochs=1", "trainer.threads=1", "trainer.baselines=false",
        "tracking.log_model=false", "tracking.log_plots=false",
        f"sweep.study={study}", f"sweep.n_trials={N_TRIALS}", "sweep.heartbeat_seconds=5",
        f"sweep.storage={storage}", f"tracking.uri={tracking_uri}"]


def test_two_sweep_commands_share_one_postgres_study_and_mlflow_server(team, tmp_path,
                                                                       monkeypatch):
    pg, mlf, work = team
    storage = pg.uri("optuna")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGPASSWORD": pg.password}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = []
    for name in ("machine-a", "machine-b"):  # each its own folder, as on its own machine
        cwd = tmp_path / name
        cwd.mkdir()
        cmd = [sys.executable, "-m", "ids.sweep", *_sweep_overrides(cwd, storage, mlf.url),
               f"hydra.run.dir={cwd}/hydra"]
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + patience(600)
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"the sweep commands did not finish within {patience(600):.0f} s")
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-4000:]

    monkeypatch.setenv("PGPASSWORD", pg.password)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), f"duplicated trial numbers: {numbers}"
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == N_TRIALS, [(t.number, t.state.name, t.user_attrs) for t in trials]

    client = MlflowClient(mlf.url)
    exp = client.get_experiment_by_name("ids")
    assert exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location
    parents = client.search_runs([exp.experiment_id],
                                 f"tags.`ids.role` = 'sweep' and tags.`ids.study` = '{STUDY}'")
    assert len(parents) == 1, f"{len(parents)} parent runs: {[r.info.run_id for r in parents]}"
    parent = parents[0].info.run_id
    assert study.user_attrs.get("mlflow.parent_run_id") == parent
    children = client.search_runs([exp.experiment_id], "tags.`ids.role` = 'trial'")
    assert {c.data.tags.get("mlflow.parentRunId") for c in children} == {parent}
    per_trial = Counter(c.data.tags["trial.number"] for c in children)
    run_ids = {c.data.tags["trial.number"]: c.info.run_id for c in children}
    for t in finished:
        assert per_trial[str(t.number)] == 1, f"trial {t.number}: {per_trial}"
        if "run_id" in t.user_attrs:  # pruned trials stop before they store it
            assert run_ids[str(t.number)] == t.user_attrs["run_id"]
    # Artifacts went through the server to its destination, not to the workers' folders.
    assert "config.yaml" in {a.path for a in client.list_artifacts(parent)}
    assert list((work / "artifacts").rglob("config.yaml"))
    assert not list(tmp_path.rglob("mlruns"))


def test_workers_starting_at_once_on_postgres_agree_on_one_parent_run(team, tmp_path,
                                                                     monkeypatch):
    """Four workers (threads here, for speed; machines in real life) ask for the study's parent
    run at the same instant: all must get the same run, and only that one may remain."""
    from ids.tuning.runs import parent_run
    from ids.tuning.study import open_study

    pg, mlf, _ = team
    monkeypatch.setenv("PGPASSWORD", pg.password)
    cfg = compose(_sweep_overrides(tmp_path, pg.uri("optuna"), mlf.url, study="race"))
    open_study(cfg)
    n = 4
    barrier = threading.Barrier(n)

    def worker(_: int) -> str:
        barrier.wait(timeout=60)
        return parent_run(cfg)

    previous_uri = mlflow.get_tracking_uri()
    try:
        with ThreadPoolExecutor(n) as pool:
            ids = set(pool.map(worker, range(n)))
    finally:
        mlflow.set_tracking_uri(previous_uri)  # parent_run pointed this process at the server
    assert len(ids) == 1, f"workers chose different parent runs: {ids}"
    client = MlflowClient(mlf.url)
    exp = client.get_experiment_by_name("ids")
    parents = client.search_runs([exp.experiment_id],
                                 "tags.`ids.role` = 'sweep' and tags.`ids.study` = 'race'")
    assert [r.info.run_id for r in parents] == list(ids)
