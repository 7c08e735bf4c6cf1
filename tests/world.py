"""Tiny configs, and the tests' shared world: a tiny real sweep, promoted, built once per session.

Three 2-epoch trials of small models on 4,000 synthetic flows, the first its start point
(real MindSpore, a real Optuna SQLite study, a real MLflow SQLite store and registry), then
`promote`: the best trial is version 1 of `ids-cnn-bilstm`, alias `champion`, scored on its
test split. Tests that only read
it take the `world` fixture; tests that change it (resume the study, promote again, log runs)
take `world_copy`, a copy of its stores in their own `tmp_path`.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from functools import cache
from pathlib import Path
from types import SimpleNamespace

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf, open_dict

from ids.config import ParamSpec, compose

# The space of tiny sweeps (`sweep_cfg`): small models, seconds per trial.
SMALL_SPACE = {
    "model.kernel_size": {"type": "int", "low": 2, "high": 4},
    "model.lstm_units": {"type": "categorical", "choices": [4, 8]},
    "data.window": {"type": "categorical", "choices": [1, 4]},
}
# The world's: windows > 1, so the flows before a flow matter to its champion.
WORLD_SPACE = {
    "model.kernel_size": {"type": "int", "low": 2, "high": 4},
    "model.lstm_units": {"type": "categorical", "choices": [4, 8]},
    "data.window": {"type": "categorical", "choices": [3, 5]},
}
WORLD_POINT = {"data.window": 5, "model.kernel_size": 3, "model.lstm_units": 8}  # trial 0
WORLD_TRIALS = 3


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


def prepared_digest(p, T: int) -> str:
    """A sha1 of every prepared array of `p` (X, y, rows, hashes, windows of T, categories of
    each split, feature names): equal digests <=> the same prepared data."""
    import hashlib

    import numpy as np

    h = hashlib.sha1()
    for s in ("train", "val", "test"):
        sp = p.split(s)
        for a in (sp.X, sp.y, sp.rows, sp.hashes, np.asarray(sp.windows(T)[:])):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(list(sp.attack)).encode())
    h.update(repr(p.feature_names).encode())
    return h.hexdigest()


@cache
def _migrated_store() -> Path:
    """A new, empty MLflow SQLite store, made once per session: MLflow runs its schema
    migrations (about a second on 2 cores, many under load) for every new store."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="ids-tests-store-"))
    atexit.register(shutil.rmtree, folder, True)
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(folder))._dispose_engine()
    return db


def mlflow_store(db: Path) -> str:
    """The URI of the MLflow SQLite store `db`, made first if absent: a copy of
    `_migrated_store` (empty; its default artifact folder is `db`'s). For tests that make a
    store: `mlflow_store(tmp_path / "mlruns" / "mlflow.db")` is where `tiny_overrides` points."""
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        template = _migrated_store()
        shutil.copyfile(template, db)
        _replace_text(db, str(template.parent), str(db.parent))
    return f"sqlite:///{db}"


def sweep_cfg(tmp: Path, *extra: str, params: dict | None = None):
    """A tiny sweep's config, its MLflow store already made (`mlflow_store`). `params` replaces
    the default space (a CLI override would merge into it). Dropout 0: MindSpore's dropout
    masks are not reproducible across processes, and a best.yaml rerun must reproduce its
    trial exactly. No plots of trials (tests/test_tracking.py checks a run's plots; the parent's
    Optuna plots are drawn all the same)."""
    mlflow_store(tmp / "mlruns" / "mlflow.db")
    cfg = compose(tiny_overrides(tmp) + ["trainer.epochs=2", "sweep.heartbeat_seconds=2",
                                         "trainer.baselines=false", "tracking.log_plots=false",
                                         "model.dropout=0.0", *extra])
    cfg.sweep.params = {}
    with open_dict(cfg.sweep.params):
        for key, spec in (params or SMALL_SPACE).items():
            cfg.sweep.params[key] = OmegaConf.merge(OmegaConf.structured(ParamSpec), spec)
    return cfg


def world_cfg(tmp: Path, *extra: str):
    """The world's config for the stores in `tmp`: its space, its start point, baselines and
    plots on as `make promote` has them (the trials ran without: `build`)."""
    cfg = sweep_cfg(tmp, f"sweep.n_trials={WORLD_TRIALS}", "trainer.baselines=true",
                    "tracking.log_plots=true", *extra, params=WORLD_SPACE)
    cfg.sweep.start_points = [dict(WORLD_POINT)]
    return cfg


def runs_of(cfg):
    """(client, parent runs, trial runs) of the experiment `cfg` logs to."""
    client = MlflowClient(tracking_uri=str(cfg.tracking.uri))
    exp = client.get_experiment_by_name(str(cfg.tracking.experiment))
    if exp is None:
        return client, [], []
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("ids.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("ids.role") == "trial"]
    return client, parents, children


def build(tmp: Path) -> SimpleNamespace:
    """Sweep (trials without baselines and plots: faster), then promote with evaluation."""
    from ids.tuning.promote import promote
    from ids.tuning.sweep import sweep

    summary = sweep(world_cfg(tmp, "trainer.baselines=false", "tracking.log_plots=false"))
    cfg = world_cfg(tmp)
    return SimpleNamespace(tmp=tmp, cfg=cfg, uri=str(cfg.tracking.uri), summary=summary,
                           promoted=promote(cfg))


def copy(world: SimpleNamespace, dest: Path) -> SimpleNamespace:
    """The world's stores copied to `dest`; every path inside them (MLflow's artifact
    locations) re-pointed at the copy, so nothing done to the copy reaches the world."""
    shutil.copytree(world.tmp, dest)
    old, new = f"{world.tmp}/", f"{dest}/"
    for db in (dest / "mlruns" / "mlflow.db", dest / "sweeps" / "optuna.db"):
        _replace_text(db, old, new)
    cfg = world_cfg(dest)
    return SimpleNamespace(tmp=dest, cfg=cfg, uri=str(cfg.tracking.uri), summary=world.summary,
                           promoted=world.promoted)


def _replace_text(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for _, column, kind, *_ in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if kind.upper().startswith(("TEXT", "VARCHAR")):
                    con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                f'WHERE instr("{column}", ?) > 0', (old, new, old))
