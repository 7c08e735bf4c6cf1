"""Model files that are data, not code: a Scorer folder is JSON and npz arrays, checked on load.

Folder layout (format `ids-scorer`, version 2):
  scorer.json        format, version, model config, window, threshold, eval_batch_size, the
                     preprocessor's settings and lists, the run's resolved config
  preprocessor.npz   the preprocessor's arrays (train means and standard deviations)
  weights.npz        the network's parameters by name

JSON is read with `json.loads` and npz with `allow_pickle=False`: reading a model runs no code,
so a model that someone else registered cannot run theirs on the machines that score flows.
A model file is input like a flow file: every file is read with a size cap, must be a regular
file inside the model's folder (a symbolic link out of it is refused), and every setting is
checked for type and range before anything is built, with the memory scoring would need
bounded by the memory this machine has.
Folders and MLflow models written by ids before version 2 hold pickles (`preprocessor.pkl`,
`python_model.pkl`): they are refused with a message that says how to replace them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ids.artifact.bounds import TooBig, check_size, memory_budget
from ids.config import MAX_MEMBERS, ConfigError, InputError, ModelConfig, check_model
from ids.data import encoding_state

FORMAT, VERSION = "ids-scorer", 2
CODE_FILE = "pyfunc_model.py"  # the models-from-code file logged with every ids model
OLD_FORMAT = ("was saved by an older ids as a pickle, and unpickling it could run any code its "
              "author put there, so ids does not load it. Train it again with this version "
              "(`python -m ids.run`, or `make sweep` + `make promote`); see docs/guide/promotion.md, 'Model files'")
JSON_CAP, MLMODEL_CAP = 64 << 20, 1 << 20  # bytes: scorer.json, MLmodel
OPTIONAL_MODEL_KEYS = {"lstm_impl", "members"}  # absent in older models / single networks
MEMBERS_KEY = "members"  # a bag of k networks (trainer.cv_folds); not a training setting


class ModelFormatError(InputError, ValueError):
    """A model folder that is not a valid, current ids model; the message names the fix."""


def local_file(path: Path) -> Path:
    """The real path of `path`, which must be a regular file inside its own folder (a symbolic
    link may point within that folder, never out of it: no /dev/zero, no FIFO, no /etc)."""
    real, folder = path.resolve(), path.parent.resolve()
    _require(real.is_relative_to(folder), f"{path.name} is a link out of its folder (to "
             f"{real}); model files must be inside the model's folder")
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise ModelFormatError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    _require(stat.S_ISREG(mode), f"{path.name} is not a regular file")
    return real


def read_capped(path: Path, cap: int) -> bytes:
    """The bytes of `local_file(path)`, at most `cap` of them."""
    real = local_file(path)
    try:
        size = os.stat(real).st_size
        _require(size <= cap, f"{path.name} is {size:,} bytes; at most {cap:,} are read (a "
                 "damaged or foreign file?)")
        with open(real, "rb") as fh:
            data = fh.read(cap + 1)
    except OSError as exc:
        raise ModelFormatError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    _require(len(data) <= cap, f"{path.name} grew past {cap:,} bytes while it was read")
    return data


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Numeric arrays only: object arrays (pickles) are refused by allow_pickle=False. What the
    file unpacks to is bounded by the memory this machine has, and every array's header must
    fit the bytes it comes with (numpy allocates what a header claims before reading)."""
    real, cap = local_file(path), memory_budget() // 4
    try:
        with zipfile.ZipFile(real) as zf:
            unpacked = sum(i.file_size for i in zf.infolist())
            _require(unpacked <= cap, f"{path.name} unpacks to {unpacked:,} bytes, more than a "
                     f"quarter of the {memory_budget():,} bytes of memory available here")
            for info in zf.infolist():
                _check_npy_header(zf, info, path)
        with np.load(real, allow_pickle=False) as npz:
            out = {k: npz[k] for k in npz.files}
    except ModelFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ModelFormatError(f"{path} is not a readable npz file of numeric arrays ({exc})") \
            from exc
    for k, a in out.items():
        if a.dtype.kind not in "fiub":
            raise ModelFormatError(f"{path}: array {k!r} has dtype {a.dtype}, not numeric")
    return out


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(fh)
    need = math.prod(shape) * dtype.itemsize
    _require(need <= info.file_size, f"{path.name}: array {info.filename!r} claims shape "
             f"{shape} ({need:,} bytes) but holds {info.file_size:,} bytes")


# --- the preprocessor: lists and settings in JSON, arrays in npz (ids.data.encoding) ---------

def preprocessor_from_state(meta: dict, arrays: dict[str, np.ndarray]):
    """`ids.data.encoding_state.from_state`, its errors as ModelFormatError."""
    try:
        return encoding_state.from_state(meta, arrays)
    except ValueError as exc:
        raise ModelFormatError(f"invalid ids model file: {exc}") from exc


# --- scorer.json --------------------------------------------------------------------------------

def check_meta(meta: Any) -> dict:
    """scorer.json after checking format, version and the type and range of every entry, and
    that scoring with it fits in memory (before anything is built)."""
    _require(isinstance(meta, dict) and meta.get("format") == FORMAT,
             f"scorer.json is not an {FORMAT} file")
    _require(meta.get("version") == VERSION, f"scorer.json has format version "
             f"{meta.get('version')!r}; this ids reads version {VERSION}. Train the model again "
             "with this version")
    model = check_model_settings(meta.get("model"))
    w = meta.get("window")
    _require(_is_int(w) and w >= 1, f"'window' must be >= 1, but got {w!r}")
    t = meta.get("threshold")
    _require(_is_number(t) and 0 <= t <= 1, f"'threshold' must be a number in [0, 1] (a score "
             f"threshold), but got {t!r}")
    b = meta.get("eval_batch_size")
    _require(_is_int(b) and b >= 1, f"'eval_batch_size' must be >= 1, but got {b!r}")
    pre = meta.get("preprocessor")
    _require(isinstance(pre, dict), "'preprocessor' must be an object")
    names = pre.get("feature_names_")
    _require(isinstance(names, list) and len(names) >= 1, "'preprocessor' must list its "
             "feature_names_")
    _require(isinstance(meta.get("config", {}), dict), "'config' must be an object")
    try:
        check_size(model, len(names), w, b)
    except TooBig as exc:
        raise ModelFormatError(f"invalid ids model file: {exc}") from exc
    return meta


def check_model_settings(model: Any) -> dict:
    """The 'model' entry: every setting of `ids.config.ModelConfig`, of its type and range."""
    _require(isinstance(model, dict), "'model' must be an object of model settings")
    fields = {f.name: type(f.default) for f in dataclasses.fields(ModelConfig)}
    fields[MEMBERS_KEY] = int
    k = model.get(MEMBERS_KEY, 1)
    _require(_is_int(k) and 1 <= k <= MAX_MEMBERS, f"model setting 'members' must be an int in "
             f"[1, {MAX_MEMBERS}] (the networks of a cross-validated bag), but got {k!r}")
    unknown = sorted(set(model) - set(fields))
    _require(not unknown, f"'model' has unknown settings {unknown[:5]}")
    missing = sorted(set(fields) - set(model) - OPTIONAL_MODEL_KEYS)
    _require(not missing, f"'model' lacks the required settings {missing}")
    for key, value in model.items():
        kind = fields[key]
        ok = (_is_int(value) if kind is int else _is_number(value) if kind is float
              else isinstance(value, kind))
        _require(ok, f"model setting {key!r} must be {'an' if kind is int else 'a'} "
                 f"{kind.__name__}, but got {value!r}")
    full = {**{f.name: f.default for f in dataclasses.fields(ModelConfig)}, **model}
    try:
        check_model(_Settings({k: v for k, v in full.items() if k != MEMBERS_KEY}),
                    prefix="model setting ")
    except ConfigError as exc:
        raise ModelFormatError(f"invalid ids model file: {exc}") from exc
    return full


def read_meta(folder: Path) -> dict:
    """The checked scorer.json of a Scorer folder; older pickled folders are refused."""
    if (folder / "preprocessor.pkl").exists() and not (folder / "preprocessor.npz").exists():
        raise ModelFormatError(f"the model in {folder} {OLD_FORMAT}")
    try:
        meta = json.loads(read_capped(folder / "scorer.json", JSON_CAP))
    except ModelFormatError as exc:
        raise ModelFormatError(f"{folder} holds no readable scorer.json ({exc}): not an ids "
                               "model folder") from exc
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{folder} holds no readable scorer.json ({type(exc).__name__}: "
                               f"{str(exc)[:200]}): not an ids model folder") from exc
    return check_meta(meta)


# --- MLmodel ------------------------------------------------------------------------------------

def check_mlmodel(model_dir: Path) -> Path:
    """The Scorer folder inside a downloaded MLflow model, after checking that the model is an
    ids models-from-code pyfunc (a cloudpickled `python_model.pkl` is refused unread)."""
    spec = _mlmodel(model_dir)
    flavors = spec.get("flavors")
    _require(isinstance(flavors, dict), "MLmodel has no 'flavors' mapping")
    pyfunc = flavors.get("python_function") or {}
    _require(isinstance(pyfunc, dict), "MLmodel 'python_function' must be a mapping")
    if pyfunc.get("python_model") and not pyfunc.get("model_code_path"):
        raise ModelFormatError(f"it {OLD_FORMAT}")
    code = pyfunc.get("model_code_path") or ""
    _require(isinstance(code, str) and Path(code).name == CODE_FILE, f"it is not an ids model "
             f"(MLmodel python_function model_code_path is {str(code)[:100] or 'absent'!r}, "
             f"expected {CODE_FILE})")
    artifacts = pyfunc.get("artifacts") or {}
    _require(isinstance(artifacts, dict), "MLmodel 'artifacts' must be a mapping")
    art = artifacts.get("scorer") or {}
    _require(isinstance(art, dict), "MLmodel artifact 'scorer' must be a mapping")
    rel = art.get("path") or "artifacts/scorer"
    _require(isinstance(rel, str), "MLmodel artifact 'scorer' path must be a string")
    folder = (model_dir / rel).resolve()
    _require(folder.is_relative_to(model_dir.resolve()) and folder.is_dir(),
             f"its scorer artifact {rel[:200]!r} is missing or outside the model folder")
    return folder


def _mlmodel(model_dir: Path) -> dict:
    """MLmodel as a mapping: capped, plain YAML (anchors and aliases, which MLflow never
    writes, are refused: a few of them can expand to gigabytes)."""
    try:
        text = read_capped(model_dir / "MLmodel", MLMODEL_CAP).decode("utf-8")
        events = yaml.parse(text, Loader=yaml.SafeLoader)
        _require(not any(isinstance(e, yaml.AliasEvent) for e in events),
                 "MLmodel uses YAML aliases; MLflow writes none")
        spec = yaml.safe_load(text)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{model_dir} has no readable MLmodel file ({exc})") from exc
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ModelFormatError(f"{model_dir} has no readable MLmodel file "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    _require(isinstance(spec, dict), "MLmodel must be a YAML mapping")
    return spec


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Settings(dict):
    """Attribute access for `ids.config.check_model`."""

    __getattr__ = dict.__getitem__


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ModelFormatError(f"invalid ids model file: {what}")
