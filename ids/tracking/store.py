"""Everything MLflow: store set-up, runs that always end with a status, and what a run logs.

The default store is SQLite (`sqlite:///mlruns/mlflow.db`); MLflow 3.13+ refuses the plain
file store. For a SQLite store the artifacts of experiment NAME go to `<db folder>/NAME/`, so
runs and artifacts stay together wherever the command is started from.
"""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ids.config import ConfigError
from ids.tracking.redact import redact, redacted

ROOT = Path(__file__).resolve().parents[2]


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working folder), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def configure(tracking_cfg) -> str:
    """Point MLflow at `tracking.uri` and return the id of `tracking.experiment` (created if new)."""
    uri = str(tracking_cfg.uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = str(tracking_cfg.experiment)
    try:
        exp = mlflow.get_experiment_by_name(name)
    except mlflow.exceptions.MlflowException as exc:
        if " 401" not in str(exc) and "UNAUTHENTICATED" not in str(exc):
            raise
        raise ConfigError(f"tracking.uri={redact(uri)}: the server requires a login; export "
                          "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (printed by "
                          "`make server`)") from exc
    if exp is not None:
        return exp.experiment_id
    location = None
    if db is not None:  # artifacts beside the database, not wherever the command runs
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        location = (db.parent.resolve() / safe).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another worker created it first
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def end_runs_killed_on_sigterm() -> None:
    """SIGTERM (kill, timeout, a scheduler) unwinds like Ctrl-C, so `start_run` ends the run
    KILLED instead of leaving it RUNNING. Entry points call this once."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def runtime_tags() -> dict[str, str]:
    """Git commit, package versions and host: what is needed to trust a run later."""
    tags = {"host": socket.gethostname(), "python": platform.python_version()}
    for pkg in ("mindspore", "mlflow", "optuna", "numpy", "pandas", "scikit-learn", "hydra-core"):
        try:
            tags[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            tags["git.commit"] = out.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=5)
            tags["git.dirty"] = str(bool(dirty.stdout.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


class StopRun(Exception):  # noqa: N818 - a signal to end the run, not an error
    """Raised through `start_run` when the caller ends the work early on purpose (a pruned
    sweep trial subclasses it): the run ends FINISHED, not FAILED."""


@contextmanager
def start_run(experiment_id: str, run_name: str | None = None, parent_run_id: str | None = None,
              tags: dict[str, Any] | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run that ends FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED (any error), never RUNNING."""
    all_tags = redacted({**runtime_tags(), **(tags or {})})
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                           parent_run_id=parent_run_id, tags=all_tags)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        stopped = isinstance(exc, StopRun)  # e.g. a pruned trial's run is a finished run
        if not stopped:
            mlflow.set_tag("error", redact(f"{type(exc).__name__}: {exc}")[:5000])
        mlflow.end_run("FINISHED" if stopped else ("KILLED" if isinstance(exc, SystemExit) else "FAILED"))
        raise
    else:
        mlflow.end_run("FINISHED")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, passwords redacted: what `config.yaml` artifacts hold."""
    return OmegaConf.to_yaml(OmegaConf.create(redacted(OmegaConf.to_container(cfg, resolve=True))))


def model_config(cfg: DictConfig) -> dict:
    """The resolved data/model/trainer sections, redacted: stored inside the model."""
    return redacted({k: OmegaConf.to_container(cfg[k], resolve=True)
                     for k in ("data", "model", "trainer")})


def log_config(cfg: DictConfig) -> None:
    """The resolved config: flattened as params (search space excluded) and whole as YAML,
    passwords redacted."""
    resolved = redacted(OmegaConf.to_container(cfg, resolve=True))
    params = {k: str(v)[:500] for k, v in flatten(resolved).items()
              if not k.startswith(("sweep.params.", "paper."))}
    mlflow.log_params(params)
    mlflow.log_text(config_yaml(cfg), "config.yaml")


def log_data(info: dict) -> None:
    """Source, path, size, class mix and content hash of the data, as tags and a JSON file."""
    info = redacted(info)
    for key in ("source", "path", "layout", "n_flows", "n_features", "hash", "split"):
        if key in info and info[key] is not None:
            mlflow.set_tag(f"data.{key}", str(info[key]))
    if info.get("attack_counts"):  # the class mix, readable in the runs table
        mix = sorted(info["attack_counts"].items(), key=lambda kv: -kv[1])
        mlflow.set_tag("data.class_mix", ", ".join(f"{k} {v}" for k, v in mix))
    mlflow.log_dict(_jsonable(info), "data.json")
    try:
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        src = str(info.get("path") or f"synthetic://n_flows={info.get('n_flows')}")
        ds = MetaDataset(source=HTTPDatasetSource(url=src), name=str(info.get("source")),
                         digest=str(info.get("hash", ""))[:36])
        mlflow.log_input(ds, context="training")
    except Exception:  # noqa: BLE001 - the dataset panel is a convenience; tags hold the facts
        pass


def log_metrics(metrics: dict[str, float], prefix: str = "", step: int | None = None) -> None:
    clean = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and v == v:  # skip NaN
            clean[(prefix + k).replace(" ", "_")] = float(v)
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_text(text: str, name: str) -> None:
    mlflow.log_text(text, name)


def log_dict(obj: dict, name: str) -> None:
    mlflow.log_dict(obj, name)


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params(params)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, f"plots/{name}.png")
    plt.close(fig)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def client() -> MlflowClient:
    return MlflowClient()


def set_run_tag(run_id: str, key: str, value: str) -> None:
    """A tag on any run of the current store (not only the active one)."""
    MlflowClient().set_tag(run_id, key, value)


def end_run(run_id: str, status: str) -> None:
    """End any run of the current store with `status` (FINISHED, FAILED, KILLED)."""
    MlflowClient().set_terminated(run_id, status)
