"""Shared fixtures: the real NetFlow samples beside the repo, and tiny configs in temp folders."""

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

ROOT = Path(__file__).resolve().parents[1]
# hypothesis keeps its caches (constants, unicode data) there, not in the checkout
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(),
                                                                    "ids-hypothesis"))
SHARED_DATA = ROOT.parent / "shared" / "data"
V1_SAMPLE = SHARED_DATA / "nf-bot-iot-sample.csv.gz"
V2_SAMPLE = SHARED_DATA / "nf-bot-iot-v2-sample.csv.gz"


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


def tiny_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a run that takes seconds: small synthetic data, small model, temp stores."""
    return [
        "data.n_flows=4000",
        "data.window=4",
        "model.filters=8",
        "model.lstm_units=8",
        "model.conv_layers=1",
        "trainer.epochs=2",
        "trainer.batch_size=128",
        "trainer.eval_batch_size=1024",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"sweep.storage=sqlite:///{tmp_path}/sweeps/optuna.db",
        f"sweep.export_dir={tmp_path}/sweeps",
        f"cache_dir={tmp_path}/cache",
    ]


@pytest.fixture
def tiny_cfg(tmp_path):
    """A composed config for a seconds-long run; call with extra overrides."""
    from ids.config import compose

    def make(*extra: str):
        return compose(tiny_overrides(tmp_path) + list(extra))

    return make


def run_cli(monkeypatch, module: str, *args: str) -> None:
    """`python -m <module> args` in this process: runpy gives Hydra the module as __main__,
    so it finds ../conf as it does from the command line."""
    monkeypatch.setattr(sys, "argv", [module, *args])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules" from runpy
        runpy.run_module(module, run_name="__main__")


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
