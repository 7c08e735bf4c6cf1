"""Model files that are data, not code: a Scorer folder is JSON and npz arrays, checked on load.

Folder layout (format `ids-scorer`, version 2):
  scorer.json        format, version, model config, window, threshold, eval_batch_size, the
                     preprocessor's settings and lists, the run's resolved config
  preprocessor.npz   the preprocessor's arrays (train means and standard deviations)
  weights.npz        the network's parameters by name

JSON is read with `json.loads` and npz with `allow_pickle=False`: reading a model runs no code,
so a model that someone else registered cannot run theirs on the machines that score flows.
Folders and MLflow models written by ids before version 2 hold pickles (`preprocessor.pkl`,
`python_model.pkl`): they are refused with a message that says how to replace them.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ids.data import encoding

FORMAT, VERSION = "ids-scorer", 2
CODE_FILE = "pyfunc_model.py"  # the models-from-code file logged with every ids model
OLD_FORMAT = ("was saved by an older ids as a pickle, and unpickling it could run any code its "
              "author put there, so ids does not load it. Train it again with this version "
              "(`python -m ids.run`, or `make sweep` + `make promote`); see README 'Model files'")


class ModelFormatError(ValueError):
    """A model folder that is not a valid, current ids model; the message names the fix."""


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Numeric arrays only: object arrays (pickles) are refused by allow_pickle=False."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelFormatError(f"{path} is not a readable npz file of numeric arrays ({exc})") \
            from exc
    for k, a in out.items():
        if a.dtype.kind not in "fiub":
            raise ModelFormatError(f"{path}: array {k!r} has dtype {a.dtype}, not numeric")
    return out


# --- the preprocessor: lists and settings in JSON, arrays in npz (ids.data.encoding) ---------

def preprocessor_from_state(meta: dict, arrays: dict[str, np.ndarray]):
    """`ids.data.encoding.from_state`, its errors as ModelFormatError."""
    try:
        return encoding.from_state(meta, arrays)
    except ValueError as exc:
        raise ModelFormatError(f"invalid ids model file: {exc}") from exc


# --- scorer.json --------------------------------------------------------------------------------

def check_meta(meta: Any) -> dict:
    """scorer.json after checking format, version and the type and range of every entry."""
    _require(isinstance(meta, dict) and meta.get("format") == FORMAT,
             f"scorer.json is not an {FORMAT} file")
    _require(meta.get("version") == VERSION, f"scorer.json has format version "
             f"{meta.get('version')!r}; this ids reads version {VERSION}. Train the model again "
             "with this version")
    _require(isinstance(meta.get("model"), dict)
             and all(isinstance(v, (int, float, str, bool)) for v in meta["model"].values()),
             "'model' must map model settings to numbers or strings")
    w = meta.get("window")
    _require(isinstance(w, int) and not isinstance(w, bool) and w >= 1, "'window' must be >= 1")
    t = meta.get("threshold")
    _require(isinstance(t, (int, float)) and math.isfinite(t), "'threshold' must be a number")
    b = meta.get("eval_batch_size")
    _require(isinstance(b, int) and b >= 1, "'eval_batch_size' must be >= 1")
    _require(isinstance(meta.get("preprocessor"), dict), "'preprocessor' must be an object")
    _require(isinstance(meta.get("config", {}), dict), "'config' must be an object")
    return meta


def read_meta(folder: Path) -> dict:
    """The checked scorer.json of a Scorer folder; older pickled folders are refused."""
    if (folder / "preprocessor.pkl").exists() and not (folder / "preprocessor.npz").exists():
        raise ModelFormatError(f"the model in {folder} {OLD_FORMAT}")
    try:
        meta = json.loads((folder / "scorer.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{folder} holds no readable scorer.json ({exc}): not an ids "
                               "model folder") from exc
    return check_meta(meta)


def check_mlmodel(model_dir: Path) -> Path:
    """The Scorer folder inside a downloaded MLflow model, after checking that the model is an
    ids models-from-code pyfunc (a cloudpickled `python_model.pkl` is refused unread)."""
    try:
        spec = yaml.safe_load((model_dir / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFormatError(f"{model_dir} has no readable MLmodel file ({exc})") from exc
    pyfunc = (spec or {}).get("flavors", {}).get("python_function") or {}
    if pyfunc.get("python_model") and not pyfunc.get("model_code_path"):
        raise ModelFormatError(f"it {OLD_FORMAT}")
    code = str(pyfunc.get("model_code_path") or "")
    _require(Path(code).name == CODE_FILE, f"it is not an ids model (MLmodel python_function "
             f"model_code_path is {code or 'absent'!r}, expected {CODE_FILE})")
    art = (pyfunc.get("artifacts") or {}).get("scorer") or {}
    rel = str(art.get("path") or "artifacts/scorer")
    folder = (model_dir / rel).resolve()
    _require(folder.is_relative_to(model_dir.resolve()) and folder.is_dir(),
             f"its scorer artifact {rel!r} is missing")
    return folder


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ModelFormatError(f"invalid ids model file: {what}")
