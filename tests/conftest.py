"""Shared fixtures, and the patterns a new test follows so that `make test` stays fast (the
target: 3 minutes on 2 cores) with real parts (MindSpore training, MLflow SQLite stores, Optuna
storage). Every training run costs 2-3 s of graph compilation: count them.

Which fixture for what (take the cheapest that still tests your behaviour):

- **A config**: `tiny_cfg(*extra)` composes one for seconds-long runs with every store in
  `tmp_path` (its MLflow store already made); `tiny_overrides(tmp_path)` is the same as a
  command line: before a run with it, `world.mlflow_store(tmp_path / "mlruns" / "mlflow.db")`
  copies a migrated empty store there (MLflow migrates each new one: seconds). Keep the sizes:
  1 epoch (`trainer.epochs=1`) unless epochs are what you test; `trainer.baselines=false` and
  `tracking.log_plots=false` unless you check those.
- **A trained model to score with**: `tiny_model` (session; a saved pyfunc folder, its
  `Scorer`, the config; window 4). Do not train your own unless training is the subject.
- **A study, a registry, a champion**: `world` (session; see tests/world.py: 3 trials,
  promoted, `models:/ids-cnn-bilstm@champion` in `world.uri`). Only read it. To resume the
  study, promote, evaluate or log anything, take `world_copy` (its stores copied into your
  `tmp_path`); never run a sweep of your own for what the world already holds.
- **A command**: `run_cli(monkeypatch, "ids.<command>", *args)` runs it in this process (add
  `hydra.run.dir={tmp_path}/hydra`; errors arrive as `SystemExit`, output through `capsys`);
  `run_cli_status(monkeypatch, capsys, ...)` returns (exit code, stdout, stderr). A
  subprocess (~10 s of imports each) only when the test is about signals, pipes, several
  processes, servers or a fresh interpreter; such tests carry `@pytest.mark.slow`.
- **Real data**: `v1_sample`, `v2_sample` (skip with the reason when ../shared/data is absent).
- **Servers and process groups**: start with `start_new_session=True`, end with `stop_group`.
- **Files**: everything a test writes goes to `tmp_path`. The session runs in a temporary
  working folder (MindSpore writes `rank_0/` there; relative defaults such as `sweeps/cache`
  land there), and it fails if the checkout holds new files afterwards (`git status --ignored`).

`make test` runs the tests not marked `slow`; `make test-slow` the slow ones (servers, kills,
serving, PostgreSQL, several processes); CI runs both, with `IDS_TESTS_NO_SKIP=1`: there a skip
(no PostgreSQL, no ../shared/data) is a failure. `pytest --durations=20` shows what costs in wall
time, `--cpu-durations=20` in CPU seconds (tests/cputime.py); waits on the clock use `patience(s)`.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from world import build as build_world
from world import copy as copy_world
from world import mlflow_store, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
# hypothesis keeps its caches (constants, unicode data) there, not in the checkout
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(),
                                                                    "ids-hypothesis"))
SHARED_DATA = ROOT.parent / "shared" / "data"
V1_SAMPLE = SHARED_DATA / "nf-bot-iot-sample.csv.gz"
V2_SAMPLE = SHARED_DATA / "nf-bot-iot-v2-sample.csv.gz"
pytest_plugins = ["cputime"]  # --cpu-durations=N: CPU seconds per test (tests/cputime.py)
__all__ = ["ROOT", "SLOWDOWN", "V1_SAMPLE", "V2_SAMPLE", "patience", "run_cli", "run_cli_status",
           "stop_group", "tiny_overrides"]


# A test that waits on the wall clock (a process to start writing, a server to answer) waits
# `patience(s)`: s is what an idle 2-core host needs with room to spare; a shared CI host at
# load 16 is ~8x slower. A hang is caught by the per-test timeout (pyproject.toml, 900 s),
# which the waits stay under. IDS_TEST_SLOWDOWN=1 keeps the idle figures.
SLOWDOWN = float(os.environ.get("IDS_TEST_SLOWDOWN", "4"))
LONGEST_WAIT = 840.0


def patience(seconds: float) -> float:
    """Seconds to wait for something that takes `seconds` at most on an idle host."""
    return min(seconds * SLOWDOWN, max(seconds, LONGEST_WAIT))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the real NF-BoT-IoT samples live in ../shared/data/")
    return path


@pytest.fixture
def v1_sample() -> Path:
    return _need(V1_SAMPLE)


@pytest.fixture
def v2_sample() -> Path:
    return _need(V2_SAMPLE)


@pytest.fixture
def tiny_cfg(tmp_path):
    """A composed config for a seconds-long run (its MLflow store made); call with extra
    overrides."""
    from ids.config import compose

    def make(*extra: str):
        mlflow_store(tmp_path / "mlruns" / "mlflow.db")
        return compose(tiny_overrides(tmp_path) + list(extra))

    return make


def run_cli(monkeypatch, module: str, *args: str) -> None:
    """`python -m <module> args` in this process: runpy gives Hydra the module as __main__,
    so it finds ../conf as it does from the command line."""
    monkeypatch.setattr(sys, "argv", [module, *args])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules" from runpy
        runpy.run_module(module, run_name="__main__")


def run_cli_status(monkeypatch, capsys, module: str, *args: str) -> tuple[int, str, str]:
    """`run_cli`, then (exit code, stdout, stderr); the code is 0 when the command returned."""
    capsys.readouterr()
    try:
        run_cli(monkeypatch, module, *args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(folder of a saved MLflow pyfunc model, its Scorer, the config): one 1-epoch training on
    4,000 synthetic flows (window 4) for the whole session; no tracking store."""
    from ids.artifact.scorer import Scorer
    from ids.config import compose
    from ids.data.prepare import prepare
    from ids.model.fit import fit
    from ids.model.runtime import setup_runtime
    from ids.tracking.models import save_scorer_model
    from ids.tracking.store import model_config

    tmp = tmp_path_factory.mktemp("tiny-model")
    cfg = compose(tiny_overrides(tmp) + ["trainer.epochs=1", "trainer.baselines=false"])
    prepared = prepare(cfg.data)
    setup_runtime(cfg.trainer)
    result = fit(cfg, prepared, checkpoint_dir=str(tmp / "ckpt"))
    scorer = Scorer(prepared.preprocessor, dict(cfg.model), int(cfg.data.window),
                    float(result.threshold), result.checkpoint, int(cfg.trainer.eval_batch_size),
                    model_config(cfg))
    return save_scorer_model(scorer, tmp / "model"), scorer, cfg


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The session's promoted tiny sweep (tests/world.py); read it, never change it."""
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world_copy(world, tmp_path):
    """The world's stores copied into this test's tmp_path: change them as you like."""
    return copy_world(world, tmp_path / "world")


def stop_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """End a command started with start_new_session=True and everything it started (make, the
    server and its workers): SIGTERM to the group, SIGKILL if it does not go."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    else:
        try:  # the command is gone, its children may not be
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- the session: a working folder outside the checkout, and the checkout checked after ------

@pytest.fixture(scope="session", autouse=True)
def _outside_the_checkout(tmp_path_factory):
    """Run the session in a temporary folder: whatever lands in the working folder (MindSpore's
    rank_0/, a relative default path) stays out of the checkout."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(autouse=True)
def _sys_path_kept():
    """sys.path as it was before the test: loading an MLflow model puts the model's code folder
    first on it (its copy of `ids`), and a `spawn` process started later in the same worker
    (the bench's measurements) imported `ids` from there and found no conf/."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


_TOOL_CACHES = (".venv", ".pytest_cache", ".ruff_cache")
_BEFORE = pytest.StashKey[object]()  # the checkout's untracked and ignored paths at the start


def _checkout_entries() -> set[str] | None:
    """Untracked and ignored paths of the checkout, tool caches left out (None: no git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    paths = {line[3:].rstrip("/") for line in out.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if p.split("/")[0] not in _TOOL_CACHES
            and "__pycache__" not in p.split("/")}


def pytest_configure(config) -> None:
    config.stash[_BEFORE] = _checkout_entries()
    if hasattr(config, "workerinput"):  # one of `make test`'s workers (pytest-xdist, -n N)
        # One MindSpore kernel thread per worker: N workers on N cores, not N x cores threads.
        # The thread count is set once per process (`setup_runtime`: the first call wins).
        from omegaconf import OmegaConf

        from ids.model.runtime import setup_runtime

        setup_runtime(OmegaConf.create({"mode": "graph", "threads": 1}))


# What a test costs, roughly, for dealing them out: a slow one (servers, several processes:
# 5-25 CPU-s) against a fast one (a fraction of a second to 3 s); the few longest as measured
# (`--cpu-durations`, docs/results/tests-ci.md). Only the order depends on these.
_SLOW_WEIGHT, _FAST_WEIGHT = 15.0, 0.4
_MEASURED = {"test_quick_bench_reports_every_figure_and_logs_it": 90.0,
             "test_context_length_moves_val_mcc_more_than_seeds": 25.0,
             "test_two_workers_share_one_study_exactly": 25.0,
             "test_two_sweep_commands_share_one_postgres_study_and_mlflow_server": 25.0,
             "test_worker_killed_mid_trial_then_resume_loses_and_doubles_nothing": 23.0,
             "test_two_sweeps_started_together_on_a_new_sqlite_store_both_finish": 20.0}


def _cost(item) -> float:
    slow = item.get_closest_marker("slow") is not None
    return _MEASURED.get(item.originalname, _SLOW_WEIGHT if slow else _FAST_WEIGHT)


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected: the slices are counted in tests
def pytest_collection_modifyitems(session, config, items) -> None:
    """Deal the tests out so that the workers finish together. `make test` runs pytest-xdist's
    `worksteal` schedule: worker k first gets the k-th of N equal slices of this order, and a
    worker that runs out takes half of the queue of the busiest one, from its end. So each
    slice starts with its share of the modules holding slow tests (servers, killed workers, the
    quick bench: the long ones start early, spread over the workers) and ends with fast ones
    (what is stolen). Modules stay together (their fixtures)."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.module.__name__, []).append(item)

    def weight(group: list) -> float:
        return sum(_cost(item) for item in group)

    slow = [m for m, group in modules.items() if any(i.get_closest_marker("slow") for i in group)]
    fast = [m for m in modules if m not in slow]
    n = int(getattr(config, "workerinput", {}).get("workercount", 1))
    slices: list[list[str]] = [[] for _ in range(max(n, 1))]
    load = [0.0] * len(slices)
    for m in sorted(slow, key=lambda m: -weight(modules[m])):  # longest first, to the lightest
        k = load.index(min(load))
        slices[k].append(m)
        load[k] += weight(modules[m])
    size = [sum(len(modules[m]) for m in s) for s in slices]
    for m in sorted(fast, key=lambda m: -len(modules[m])):  # then even counts: the split is by
        k = size.index(min(size))  # count, and a slice's end is what the others steal
        slices[k].append(m)
        size[k] += len(modules[m])
    items[:] = [item for s in slices for m in s for item in modules[m]]


def pytest_collection_finish(session) -> None:
    # MindSpore runs a full gc.collect() before every graph compile; the test modules have
    # imported MindSpore, MLflow, pandas, ...: freeze those objects, so each collect skips them.
    from ids.model.runtime import settle_heap

    settle_heap()


def pytest_sessionfinish(session, exitstatus) -> None:
    before = session.config.stash.get(_BEFORE, None)
    after = _checkout_entries()
    if before is None or after is None or hasattr(session.config, "workerinput"):
        return
    new = sorted(after - before)
    if new:
        print(f"\nERROR: the tests left new files in the checkout {ROOT} (git status "
              f"--ignored): {new}. Tests write to tmp_path only.", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under IDS_TESTS_NO_SKIP=1 (CI) a skipped test fails: CI runs every test."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("IDS_TESTS_NO_SKIP") == "1" and report.skipped \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but IDS_TESTS_NO_SKIP=1 (CI runs every test): {reason}"

