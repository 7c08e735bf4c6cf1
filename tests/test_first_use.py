"""Concurrent first use: workers started together on a NEW store all get it.

Each worker is a real process that imports ids, waits at a barrier (a file), then opens the
MLflow store (`ids.tracking.store.configure`) and the Optuna storage
(`ids.tuning.study.storage_for`) and creates a study, all on a database no one has used yet.
Without the first-use lock, MLflow's table creation raced and one worker died.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, patience, tiny_overrides

WORKER = """
import sys, time
from pathlib import Path
from omegaconf import OmegaConf
import optuna
from ids.tracking import store
from ids.tuning import study

barrier, tracking, storage = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(barrier / f"ready-{sys.argv[4]}").touch()
while not (barrier / "go").exists():
    time.sleep(0.002)
exp = store.configure(OmegaConf.create({"uri": tracking, "experiment": "ids"}))
rdb = study.storage_for(OmegaConf.create({"storage": storage, "heartbeat_seconds": 30,
                                          "max_retry": 1}))
optuna.create_study(study_name="race", storage=rdb, load_if_exists=True)
print("ok", exp)
"""


def _race(tmp_path: Path, tracking: str, storage: str, n: int, env: dict | None = None):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(barrier), tracking, storage,
                               str(i)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(n)]
    try:
        deadline = time.monotonic() + patience(120)
        while len(list(barrier.glob("ready-*"))) < n:  # all imported: start them at once
            assert time.monotonic() < deadline, [p.poll() for p in procs]
            time.sleep(0.05)
        (barrier / "go").touch()
        outs = [p.communicate(timeout=patience(120))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs], outs


@pytest.mark.slow  # three processes that import ids: ~14 s (40 s of CPU)
def test_workers_started_together_on_a_new_sqlite_store_all_work(tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    codes, outs = _race(tmp_path, tracking, f"sqlite:///{tmp_path}/sweeps/optuna.db", n=3)
    assert codes == [0] * 3, "\n---\n".join(o[-1500:] for o in outs)
    experiment_ids = {o.strip().splitlines()[-1] for o in outs}
    assert len(experiment_ids) == 1  # one experiment 'ids', found or created by all
    assert [e.name for e in MlflowClient(tracking).search_experiments()].count("ids") == 1


@pytest.mark.slow
def test_workers_started_together_on_a_new_postgres_store_all_work(tmp_path):
    from ids.tools import servers

    try:
        servers.pg_bin_dir()
    except servers.ServerError as exc:
        pytest.skip(str(exc))
    data_dir = Path(tempfile.mkdtemp(prefix="ids-test-pg-"))  # as root: run as user postgres
    pg = None
    try:
        pg = servers.start_postgres(data_dir, port=servers.free_port())
        for name in ("race_mlflow", "race_optuna"):
            pg.create_database(name)
        codes, outs = _race(tmp_path, pg.uri("race_mlflow"), pg.uri("race_optuna"), n=4,
                            env={"PGPASSWORD": pg.password})
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert codes == [0] * 4, "\n---\n".join(o[-1500:] for o in outs)
    assert len({o.strip().splitlines()[-1] for o in outs}) == 1


@pytest.mark.slow
def test_two_sweeps_started_together_on_a_new_sqlite_store_both_finish(tmp_path):
    """The issue's case: two `ids.sweep` commands at the same moment on new stores."""
    args = [*tiny_overrides(tmp_path), "trainer.epochs=1", "trainer.baselines=false",
            "tracking.log_model=false", "tracking.log_plots=false", "sweep.n_trials=2",
            "trainer.threads=1", "quiet=true"]
    procs = [subprocess.Popen([sys.executable, "-m", "ids.sweep", *args,
                               f"hydra.run.dir={tmp_path}/hydra{i}"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=patience(300))[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(o[-2000:] for o in outs)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ids").experiment_id])
    assert runs and all(r.info.status == "FINISHED" for r in runs)


def test_a_lost_race_is_tried_again_and_any_other_error_is_raised_at_once():
    """The error two sweep commands ending together got from a PostgreSQL-backed MLflow server
    (both set the same tag of their shared parent run) is retried; a real error is not."""
    from ids.tracking.database import retried

    calls = []

    def set_tag() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key "
                               'value violates unique constraint "tag_pk"')
        return "set"

    assert retried(set_tag, pause=0) == "set" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("no such run")

    calls.clear()
    with pytest.raises(ValueError, match="no such run"):
        retried(broken, pause=0)
    assert len(calls) == 1
