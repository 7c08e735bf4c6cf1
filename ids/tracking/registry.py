"""Find and load models in the MLflow store: registered (`models:/NAME@alias`,
`models:/NAME/3`), logged (`models:/m-...`, `runs:/RUN/model`) or a local folder.

`resolve_model` checks that the model exists before anything is loaded and raises
`ModelNotFound` naming what is there instead (registered models and their aliases), so a typo
costs one line of output, not a stack trace from deep inside MLflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ids.artifact import modelfile
from ids.artifact.modelfile import ModelFormatError
from ids.artifact.scorer import Scorer
from ids.config import InputError, typed
from ids.tracking import database, store

_VERSION = re.compile(r"^\d+$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Artifact stores MLflow reads a model from besides the store's own (each may need its client
# package: boto3 for s3, google-cloud-storage for gs, ...); any other scheme is refused.
REMOTE_SCHEMES = ("s3", "gs", "wasbs", "abfss", "hdfs", "viewfs", "ftp", "sftp", "http",
                  "https", "mlflow-artifacts", "dbfs", "oss")


class RegistryError(InputError, ValueError):
    """A study, store, model or alias that does not exist; the message names the fix."""


class ModelNotFound(RegistryError):
    """The model URI does not point at a loadable ids model."""


@dataclass
class ModelRef:
    """What a model URI points at, as far as the store knows it."""

    uri: str
    name: str | None = None  # registered model name
    version: str | None = None  # registered version
    run_id: str | None = None  # the training run that logged it
    model_id: str | None = None  # MLflow 3 LoggedModel id (m-...)

    @property
    def pinned_uri(self) -> str:
        """`models:/NAME/VERSION` for a registered model (an alias may move later), else the URI."""
        return f"models:/{self.name}/{self.version}" if self.name and self.version else self.uri

    @property
    def label(self) -> str:
        """Short name for report columns: `NAME vN`, the logged model id, or the URI."""
        if self.name and self.version:
            return f"{self.name} v{self.version}"
        return self.model_id or self.uri

    def tags(self) -> dict[str, str]:
        out = {"model_uri": self.uri}
        for key, value in (("registered_model.name", self.name),
                           ("registered_model.version", self.version),
                           ("model.run_id", self.run_id), ("model.id", self.model_id)):
            if value:
                out[key] = str(value)
        return out


def default_model_uri(cfg) -> str:
    """`model_uri` when set, else `models:/<promote.model_name>@<promote.alias>`."""
    return str(cfg.model_uri) if cfg.get("model_uri") else \
        f"models:/{cfg.promote.model_name}@{cfg.promote.alias}"


def _scheme(uri: str) -> str | None:
    """'s3' of 's3://bucket/model' (lower case); None for a path."""
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m and len(m.group(1)) > 1 else None  # 'C:' is a drive


def needs_store(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/"))


def connect(tracking_uri: str) -> MlflowClient:
    """Point MLflow at an EXISTING store: a missing SQLite file is an error here, not a new empty
    store in which every model is then 'not found'."""
    database.check_reachable(str(tracking_uri), "tracking.uri")  # first: a FIFO is no file
    db = store.sqlite_path(str(tracking_uri))
    if db is not None and not db.is_file():
        raise RegistryError(
            f"tracking.uri={tracking_uri!r}: no MLflow store at {db.resolve()}. Run `make sweep` "
            "(or `python -m ids.run`) first, or set tracking.uri to the store that holds the model")
    mlflow.set_tracking_uri(str(tracking_uri))
    return MlflowClient()


def registered_summary(client: MlflowClient) -> str:
    """'a (champion -> v2, previous -> v1), b (no alias)' or 'none'."""
    try:
        models = client.search_registered_models(max_results=50)
    except MlflowException:
        return "unknown"
    parts = []
    for m in models:
        aliases = ", ".join(f"{a} -> v{v}" for a, v in sorted((m.aliases or {}).items()))
        parts.append(f"{m.name} ({aliases or 'no alias'})")
    return ", ".join(parts) or "none"


def _missing(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def resolve_model(uri: str, client: MlflowClient | None = None) -> ModelRef:
    """Check that `uri` exists in the current store and say what it is; ModelNotFound if not."""
    uri = str(uri).strip()
    scheme = _scheme(uri)
    if scheme not in (None, "models", "runs", "file", *REMOTE_SCHEMES):
        raise ModelNotFound(f"model_uri={uri!r}: unknown scheme '{scheme}:'; use "
                            "models:/NAME@ALIAS, runs:/<run id>/model, a model folder, file:// or "
                            f"an artifact store MLflow reads ({', '.join(REMOTE_SCHEMES)})")
    if not needs_store(uri):
        path = Path(uri.removeprefix("file://")).expanduser()
        if "://" not in uri and not (path / "MLmodel").is_file():
            raise ModelNotFound(f"model_uri={uri!r} is neither a model folder (no MLmodel file "
                                "there) nor a models:/ or runs:/ URI; use e.g. "
                                "models:/ids-cnn-bilstm@champion or runs:/<run id>/model")
        return ModelRef(uri)
    client = client or MlflowClient()
    store = mlflow.get_tracking_uri()
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/"):].split("/", 1)[0]
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            raise ModelNotFound(f"model_uri={uri!r}: no run {run_id!r} in tracking.uri={store}; "
                                "copy the run id from `make ui`, or set tracking.uri to the store "
                                "the run was logged to") from exc
        return ModelRef(uri, run_id=run_id)
    rest = uri[len("models:/"):]
    if rest.startswith("m-") and "/" not in rest and "@" not in rest:
        try:
            lm = mlflow.get_logged_model(rest)
        except MlflowException as exc:
            raise ModelNotFound(f"model_uri={uri!r}: no logged model {rest!r} in tracking.uri="
                                f"{store}; set tracking.uri to the store the sweep or run logged "
                                "to") from exc
        return ModelRef(uri, run_id=lm.source_run_id, model_id=lm.model_id)
    name, sep, ref = rest.partition("@") if "@" in rest else rest.rpartition("/")
    if not name or not ref or (sep == "/" and not _VERSION.match(ref)):
        raise ModelNotFound(f"model_uri={uri!r} is malformed: use models:/NAME@ALIAS, "
                            "models:/NAME/VERSION or models:/m-<logged model id>")
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _missing(exc):
            raise
        raise ModelNotFound(f"model_uri={uri!r}: no registered model {name!r} in tracking.uri="
                            f"{store} (registered models: {registered_summary(client)}). Promote "
                            "a sweep's best trial first (`make promote`), or fix the name") from exc
    try:
        mv = (client.get_model_version_by_alias(name, ref) if sep == "@"
              else client.get_model_version(name, ref))
    except MlflowException as exc:
        if not _missing(exc):
            raise
        what = f"alias {ref!r}" if sep == "@" else f"version {ref}"
        raise ModelNotFound(f"model_uri={uri!r}: registered model {name!r} has no {what} "
                            f"(registered models: {registered_summary(client)}). Use one of "
                            "those aliases or versions, or run `make promote`") from exc
    model_id = getattr(mv, "model_id", None)
    if not model_id and str(mv.source).startswith("models:/m-"):
        model_id = str(mv.source)[len("models:/"):]
    return ModelRef(uri, name=name, version=str(mv.version), run_id=mv.run_id, model_id=model_id)


def download_model(ref: ModelRef | str, dst: Path | None = None) -> Path:
    """The Scorer folder of a logged or registered model (runs:/..., models:/NAME@alias, a
    path), downloaded into `dst` (default: a temporary folder) and checked as data: nothing
    stored with the model is executed. ModelNotFound if it is not an ids model."""
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri

    ref = ref if isinstance(ref, ModelRef) else ModelRef(str(ref))
    try:
        local = _download_artifact_from_uri(artifact_uri=str(ref.uri),
                                            output_path=None if dst is None else str(dst))
        return modelfile.check_mlmodel(Path(local))
    except ModelFormatError as exc:
        raise ModelNotFound(f"model_uri={ref.uri!r}: {exc}") from exc
    except ImportError as exc:  # an artifact store whose client package is not installed
        raise ModelNotFound(f"model_uri={ref.uri!r}: reading {_scheme(str(ref.uri)) or 'it'}:// "
                            f"needs a package that is not installed ({exc}); install it, or "
                            "download the model folder and pass its path") from exc
    except Exception as exc:  # noqa: BLE001 - a remote store's client raises what it likes
        if not isinstance(exc, (MlflowException, OSError)) and \
                _scheme(str(ref.uri)) not in REMOTE_SCHEMES:
            raise  # a bug here, not the outside world
        raise ModelNotFound(f"model_uri={ref.uri!r} could not be loaded ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}); point model_uri at a model "
                            "logged by ids") from exc


def load_scorer(ref: ModelRef | str) -> Scorer:
    """The `Scorer` behind a model (a resolved ModelRef or a URI); ModelNotFound if it is not
    an ids model."""
    ref = ref if isinstance(ref, ModelRef) else ModelRef(str(ref))
    folder = download_model(ref)
    try:
        return Scorer.load(folder)
    except ModelFormatError as exc:
        raise ModelNotFound(f"model_uri={ref.uri!r}: {exc}") from exc


def logged_config(client: MlflowClient | None, run_id: str | None):
    """The resolved config the run logged (`config.yaml` artifact) as a DictConfig with seed,
    data, model and trainer typed by today's schema; None when the run or file is absent."""
    import tempfile

    from omegaconf import OmegaConf

    if client is None or not run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="ids-config-") as tmp:
        try:
            path = client.download_artifacts(run_id, "config.yaml", tmp)
        except (MlflowException, OSError):
            return None
        return typed(OmegaConf.load(path))


def run_tag(client: MlflowClient, run_id: str | None, key: str) -> str | None:
    """A tag of a run, or None when the run or tag is absent."""
    if not run_id:
        return None
    try:
        return client.get_run(run_id).data.tags.get(key)
    except MlflowException:
        return None


def register(client: MlflowClient, name: str, model_uri: str, ref: ModelRef,
             tags: dict[str, str], description: str) -> tuple[str, bool]:
    """(version, created): the version registered from the same training run (tag
    ids.run_id and source match) if there is one, else a new version."""
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            name, description="ids CNN-BiLSTM intrusion detectors promoted from Optuna studies "
                              "(`make promote`); the alias `champion` is the one in use")
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get("ids.run_id") == tags["ids.run_id"] and mv.source == model_uri:
            return str(mv.version), False
    mv = client.create_model_version(name, source=model_uri, run_id=ref.run_id, tags=tags,
                                     description=description, model_id=ref.model_id)
    return str(mv.version), True


def move_aliases(client: MlflowClient, name: str, alias: str, previous_alias: str,
                 version: str) -> str | None:
    """Point `alias` at `version`; the version that held it gets `previous_alias`. Returns the
    version that held `alias` before (None if none)."""
    try:
        before = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        before = None
    if before != version:
        if before is not None:
            client.set_registered_model_alias(name, previous_alias, before)
        client.set_registered_model_alias(name, alias, version)
    return before
