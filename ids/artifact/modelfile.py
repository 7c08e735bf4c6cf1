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

from ids.config import ConfigError, ModelConfig, check_model
from ids.data import encoding
from ids.model.network import ROW_PAD, sequence_lengths

FORMAT, VERSION = "ids-scorer", 2
CODE_FILE = "pyfunc_model.py"  # the models-from-code file logged with every ids model
OLD_FORMAT = ("was saved by an older ids as a pickle, and unpickling it could run any code its "
              "author put there, so ids does not load it. Train it again with this version "
              "(`python -m ids.run`, or `make sweep` + `make promote`); see README 'Model files'")
JSON_CAP, MLMODEL_CAP = 64 << 20, 1 << 20  # bytes: scorer.json, MLmodel
MAX_STEPS = 1024  # the unrolled BiLSTM compiles one cell per step of its sequence
MAX_LAYERS = 64  # conv or LSTM layers: each is compiled into the scoring graph
OPTIONAL_MODEL_KEYS = {"lstm_impl"}  # absent in models saved before it existed


class ModelFormatError(ValueError):
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
    """Numeric arrays only: object arrays (pickles) are refused by allow_pickle=False. The file
    and what it unpacks to are bounded by the memory this machine has."""
    real, cap = local_file(path), memory_budget() // 4
    try:
        with zipfile.ZipFile(real) as zf:
            unpacked = sum(i.file_size for i in zf.infolist())
        _require(unpacked <= cap, f"{path.name} unpacks to {unpacked:,} bytes, more than a "
                 f"quarter of the {memory_budget():,} bytes of memory available here")
        with np.load(real, allow_pickle=False) as npz:
            out = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
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
    check_size(model, len(names), w, b)
    return meta


def check_model_settings(model: Any) -> dict:
    """The 'model' entry: every setting of `ids.config.ModelConfig`, of its type and range."""
    _require(isinstance(model, dict), "'model' must be an object of model settings")
    fields = {f.name: type(f.default) for f in dataclasses.fields(ModelConfig)}
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
        check_model(_Settings(full), prefix="model setting ")
    except ConfigError as exc:
        raise ModelFormatError(f"invalid ids model file: {exc}") from exc
    _require(full["conv_layers"] <= MAX_LAYERS and full["lstm_layers"] <= MAX_LAYERS,
             f"at most {MAX_LAYERS} conv and {MAX_LAYERS} LSTM layers, but got "
             f"{full['conv_layers']} and {full['lstm_layers']}")
    return full


def check_size(model: dict, n_features: int, window: int, batch: int) -> None:
    """ModelFormatError unless the network and one scoring batch fit in the memory available
    here (an estimate of parameters and activations, float32), and the unrolled BiLSTM's
    sequence is short enough to compile."""
    need = 4 * (2 * params(model, n_features) + scoring_values(model, n_features, window, batch))
    have = memory_budget()
    _require(need <= have, f"scoring with 'window' {window}, 'eval_batch_size' {batch} and these "
             f"layer sizes would need about {need / 1e9:.1f} GB of memory, more than the "
             f"{have / 1e9:.1f} GB available here; the file is damaged, or the model is too big "
             "for this machine")
    steps = (sequence_lengths(window, model["conv_layers"], model["pool_size"]) or [window])[-1]
    _require(model["lstm_impl"] != "unrolled" or steps <= MAX_STEPS, f"'window' {window} leaves "
             f"a sequence of {steps} steps for the unrolled BiLSTM; at most {MAX_STEPS} compile")


def params(model: dict, n_features: int) -> int:
    """An upper estimate of the network's parameter count (`ids.model.network`)."""
    c, k, h = model["filters"], model["kernel_size"], model["lstm_units"]
    conv = sum((n_features if i == 0 else c) * c * k + c for i in range(model["conv_layers"]))
    lstm_in = c if model["conv_layers"] else n_features
    lstm = sum(2 * 4 * h * ((lstm_in if i == 0 else 2 * h) + h + 2)
               for i in range(model["lstm_layers"]))
    d = model["dense_units"]
    return conv + lstm + (2 * h * d + d + d + 1 if d else 2 * h + 1)


def scoring_values(model: dict, n_features: int, window: int, batch: int) -> int:
    """An upper estimate of the float32 values alive while one batch is scored: the windows
    (copied and padded), every conv block's output and the LSTM's gate projections."""
    rows = batch + ROW_PAD
    conv = 3 * model["filters"] * window * model["conv_layers"]
    lstm = 10 * model["lstm_units"] * window * model["lstm_layers"]
    return rows * (3 * window * n_features + conv + lstm)


def memory_budget() -> int:
    """Bytes of memory available now (MemAvailable; the physical size where it is unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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
