"""Everything MLflow: store set-up, runs that always end with a status, and what a run logs.

The default store is SQLite (`sqlite:///mlruns/mlflow.db`); MLflow 3.13+ refuses the plain
file store. For a SQLite store the artifacts of experiment NAME go to `<db folder>/NAME/`, so
runs and artifacts stay together wherever the command is started from.
"""

from __future__ import annotations

import gc
import json
import logging
import platform
import socket
import subprocess
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient, fluent
from omegaconf import DictConfig, OmegaConf

from ids.config import ConfigError
from ids.tracking import database, signals
from ids.tracking.database import StoreError, sqlite_path  # noqa: F401 - store's API
from ids.tracking.redact import redact, redacted

ROOT = Path(__file__).resolve().parents[2]
# MLflow logs every database error with its traceback before raising it; ids says it in one
# line (ids.cli), so that logger speaks only when something is worse than an error.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def configure(tracking_cfg) -> str:
    """Point MLflow at `tracking.uri` and return the id of `tracking.experiment` (created if
    new). Workers that start together on a new store all get it (`database.first_use`)."""
    uri = str(tracking_cfg.uri)
    database.check_reachable(uri, "tracking.uri")
    mlflow.set_tracking_uri(uri)
    name = str(tracking_cfg.experiment)
    try:
        return database.first_use(uri, lambda: _experiment_id(name, sqlite_path(uri)))
    except mlflow.exceptions.MlflowException as exc:
        if " 401" not in str(exc) and "UNAUTHENTICATED" not in str(exc):
            raise
        raise ConfigError(f"tracking.uri={redact(uri)}: the server requires a login; export "
                          "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (printed by "
                          "`make server`)") from exc


# MLflow 3.17's UI opens an experiment on its GenAI overview (traces, token usage) unless the
# experiment says it is for model training: then it opens on the runs table.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def _experiment_id(name: str, db: Path | None) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        declare_kind(exp)
        return exp.experiment_id
    location = None
    if db is not None:  # artifacts beside the database, not wherever the command runs
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        location = (db.parent.resolve() / safe).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags={KIND_TAG: KIND})
    except Exception:  # noqa: BLE001 - another worker created it first
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def declare_kind(exp, client: MlflowClient | None = None) -> None:
    """Tag an experiment made before ids declared its kind (or by hand). A kind already set
    (the UI's own selector writes it) is kept; a user who may not write the experiment (a
    team server's reader) leaves it as it is: the tag only decides where the UI opens."""
    if exp.tags.get(KIND_TAG):
        return
    with suppress(mlflow.exceptions.MlflowException):
        (client or MlflowClient()).set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)


def store_problem(exc: BaseException) -> str | None:
    """One line for an error the MLflow store or server reported (a server error, a refused
    request, a database MLflow could not use); None for other errors."""
    if not isinstance(exc, mlflow.exceptions.MlflowException):
        return None
    first = (str(exc.message).strip().splitlines() or [""])[0]
    return f"MLflow store {redact(mlflow.get_tracking_uri())}: {first[:400]}"


def status_for(exc: BaseException | None) -> str:
    """The MLflow status of a run that `exc` stopped (None: it ran to its end)."""
    if exc is None or isinstance(exc, StopRun):
        return "FINISHED"
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"


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
            # --no-optional-locks: a status killed by the timeout leaves no index.lock behind
            dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain",
                                    "--untracked-files=no"],
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
    """A run that ends FINISHED, KILLED (Ctrl-C, SIGTERM, SIGHUP) or FAILED (any error), never
    RUNNING; when the store cannot record the end (a full disk), StoreError says so. Signals
    wait while the run is created and while it is ended (`ids.tracking.signals`)."""
    all_tags = redacted({**runtime_tags(), **(tags or {})})
    signals.deferred += 1  # inline, not a call: Python runs signal handlers at calls
    try:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                               parent_run_id=parent_run_id, tags=all_tags)
    except BaseException:
        signals.resume()
        raise
    stopped: BaseException | None = None
    try:
        signals.resume()  # a signal that came while the run was created acts here, inside the try
        yield run
    except BaseException as exc:
        stopped = exc
        raise
    finally:
        signals.deferred += 1
        try:
            _finish(run.info.run_id, stopped)
        finally:
            signals.resume()


def _finish(run_id: str, exc: BaseException | None) -> None:
    status = status_for(exc)
    if status == "KILLED":  # a signal may have landed inside one of MLflow's own writes: the
        traceback.clear_frames(exc.__traceback__)  # frames it left hold a connection that
        gc.collect()  # keeps SQLite locked; release it, or ending the run waits and fails
    if status != "FINISHED":
        with suppress(Exception):  # the status matters more than the tag
            mlflow.set_tag("error", redact(f"{type(exc).__name__}: {exc}")[:5000])
    try:
        mlflow.end_run(status)
    except Exception as err:  # noqa: BLE001 - the store could not be written
        stack = fluent._active_run_stack.get()  # forget it: the next run is not its child
        if stack and stack[-1].info.run_id == run_id:
            stack.pop()
        raise _unrecorded(run_id, status, err, exc) from (exc or err)


def _unrecorded(run_id: str, status: str, err: Exception, cause: BaseException | None):
    why = f"; it had stopped because: {database.root_cause(cause)}" if status == "FAILED" else ""
    return StoreError(f"MLflow run {run_id} could not be marked {status}: the store itself could "
                      f"not be written ({database.root_cause(err)}), so it shows as RUNNING; free "
                      f"the disk or fix the store{why}")


def end_active_runs(killed: bool) -> None:
    """Last resort when a command stops: end whatever run is still active (KILLED or FAILED)."""
    for _ in range(10):
        if mlflow.active_run() is None:
            return
        with suppress(Exception):
            mlflow.end_run("KILLED" if killed else "FAILED")


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
    for key in ("source", "path", "layout", "n_flows", "n_features", "hash", "split", "order"):
        if key in info and info[key] is not None:
            mlflow.set_tag(f"data.{key}", str(info[key]))
    for split, span in (info.get("time_range") or {}).items():  # NF-v3: a split in time
        if span:
            mlflow.set_tag(f"data.time_range.{split}", f"{span['first']} .. {span['last']}")
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
    """End any run of the current store with `status` (FINISHED, FAILED, KILLED); StoreError
    when the store cannot record it."""
    with signals.deferred_while():
        try:
            MlflowClient().set_terminated(run_id, status)
        except Exception as exc:  # noqa: BLE001 - the store could not be written
            raise _unrecorded(run_id, status, exc, None) from exc
