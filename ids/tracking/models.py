"""A Scorer logged as an MLflow model: its data, the `ids` package as code, pinned requirements.

MLflow's models-from-code (`ids/artifact/pyfunc_model.py`): `mlflow.pyfunc.load_model` works
where this checkout is not installed, and loading unpickles nothing.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import mlflow

from ids.artifact import modelfile

PACKAGE = Path(__file__).resolve().parents[1]  # the ids package, logged as the model's code


def log_scorer(scorer, name: str = "model") -> str:
    """Log a Scorer as an MLflow pyfunc model from code (`ids/artifact/pyfunc_model.py`): its data in
    artifacts/scorer, the `ids` package in code/ and every requirement pinned, so the model
    loads in a clean environment and loading it unpickles nothing. Returns its model URI."""
    with _pyfunc_files(scorer) as kwargs:
        return mlflow.pyfunc.log_model(name=name, **kwargs).model_uri


def save_scorer_model(scorer, path: str | Path) -> str:
    """The same model as `log_scorer`, written to a local folder (no tracking store)."""
    with _pyfunc_files(scorer) as kwargs:
        mlflow.pyfunc.save_model(str(path), **kwargs)
    return str(path)


@contextmanager
def _pyfunc_files(scorer) -> Iterator[dict]:
    # No signature: MLflow's schema enforcement refuses int64 columns where a file has floats,
    # and the Preprocessor already checks columns and values with clearer errors.
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)  # "signature cannot be inferred" notes
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = scorer.save(Path(tmp) / "scorer")
            code = Path(tmp) / "code" / "ids"
            shutil.copytree(PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            yield {"python_model": str(PACKAGE / "artifact" / modelfile.CODE_FILE),
                   "artifacts": {"scorer": str(folder)}, "code_paths": [str(code)],
                   "pip_requirements": requirements()}
    finally:
        pyfunc_log.setLevel(level)


_FALLBACK_REQUIREMENTS = ("mindspore", "numpy", "pandas", "scikit-learn", "mlflow", "pyarrow")


def requirements() -> list[str]:
    """Every runtime requirement of the installed `ids` distribution, pinned to the version
    installed here (the model was trained and checked with exactly these)."""
    try:
        declared = [r for r in (metadata.requires("ids") or []) if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        declared = list(_FALLBACK_REQUIREMENTS)
    reqs = []
    for spec in declared:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?", spec)
        if not m:
            continue
        try:
            reqs.append(f"{m.group(1)}{m.group(2) or ''}=={metadata.version(m.group(1))}")
        except metadata.PackageNotFoundError:
            reqs.append(spec.split(";")[0].strip())
    return reqs
