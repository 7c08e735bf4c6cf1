"""The sweep's search space: `sweep.params` maps any config key to an Optuna distribution.

    params:
      model.kernel_size: {type: int, low: 2, high: 5}
      trainer.lr: {type: float, low: 0.0003, high: 0.01, log: true}
      data.window: {type: categorical, choices: [1, 5, 10, 20]}

`check_space` rejects a bad space before any trial runs; `suggest` samples one point and
`apply` returns the trial's config with those values set. `sweep.start_points` lists points
the study tries first (Ray Tune's `points_to_evaluate`, Optuna's `enqueue_trial`): each is
{key: value} for keys of `params`, inside their ranges; keys left out are sampled.
`sweep.fixed` ({key: value}) sets keys every trial shares (e.g. `trainer.epoch_flows`), recorded
in each trial's config like the sampled ones.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from ids.artifact.bounds import check_training
from ids.config import ConfigError, validate

_ABSENT = object()
TYPES = ("int", "float", "categorical")


class SpaceError(ConfigError):
    """`sweep.params` is malformed; the message names the entry and the rule."""


def _num(spec, key: str, kind: str) -> tuple[float, float]:
    low, high = spec.get("low"), spec.get("high")
    if low is None or high is None:
        raise SpaceError(f"sweep.params.{key}: type {kind} needs low and high, but got "
                         f"(low={low}, high={high})")
    if not low <= high:
        raise SpaceError(f"sweep.params.{key}: `low <= high` must hold, but got "
                         f"(low={low}, high={high})")
    if spec.get("log") and low <= 0:
        raise SpaceError(f"sweep.params.{key}: log scale needs low > 0, but got low={low}")
    return low, high


def bounds(key: str, spec) -> list[Any]:
    """The extreme values of one entry (checked against the config before the sweep)."""
    kind = spec.get("type")
    if kind not in TYPES:
        raise SpaceError(f"sweep.params.{key}: type must be one of {', '.join(TYPES)}, "
                         f"but got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not choices:
            raise SpaceError(f"sweep.params.{key}: categorical needs a non-empty `choices` list, "
                             f"but got {choices!r}")
        return list(choices)
    low, high = _num(spec, key, kind)
    if kind == "int":
        if low != int(low) or high != int(high):
            raise SpaceError(f"sweep.params.{key}: int bounds must be whole numbers, but got "
                             f"(low={low}, high={high})")
        return [int(low), int(high)]
    return [float(low), float(high)]


def check_space(cfg: DictConfig) -> None:
    """Every key exists in the config, every range is valid, and its extremes pass validation."""
    params = cfg.sweep.params
    if not params:
        raise SpaceError("sweep.params is empty: give at least one config key to search over")
    for key in cfg.sweep.get("fixed") or {}:
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT or key.startswith("sweep."):
            raise SpaceError(f"sweep.fixed.{key}: '{key}' is not a config key (see "
                             "`python -m ids.run --cfg job` for the keys)")
    try:
        _trainable(apply(cfg, {}))
    except (ConfigError, ValueError, TypeError) as exc:
        raise SpaceError(f"sweep.fixed {dict(cfg.sweep.fixed)} is invalid: {exc}") from exc
    for key, spec in params.items():
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT or key.startswith("sweep."):
            raise SpaceError(f"sweep.params.{key}: '{key}' is not a config key (see "
                             "`python -m ids.run --cfg job` for the keys)")
        for value in bounds(key, spec):
            try:
                _trainable(apply(cfg, {key: value}))
            except (ConfigError, ValueError, TypeError) as exc:
                raise SpaceError(f"sweep.params.{key}: the value {value!r} is invalid: {exc}") \
                    from exc


def _trainable(cfg: DictConfig) -> None:
    """The settings are valid and a training run with them fits in memory here."""
    validate(cfg)
    check_training(cfg)


def check_start_points(cfg: DictConfig) -> list[dict[str, Any]]:
    """`sweep.start_points` as plain dicts, each key a `params` key and each value in its range."""
    points = OmegaConf.to_container(cfg.sweep.start_points, resolve=True) or []
    for i, point in enumerate(points):
        where = f"sweep.start_points[{i}]"
        if not isinstance(point, dict) or not point:
            raise SpaceError(f"{where} must be a non-empty mapping {{config key: value}}, "
                             f"but got {point!r}")
        for key, value in point.items():
            spec = cfg.sweep.params.get(key)
            if spec is None:
                raise SpaceError(f"{where}: {key!r} is not a key of sweep.params "
                                 f"({', '.join(cfg.sweep.params)})")
            allowed = bounds(key, spec)
            ok = value in allowed if spec.type == "categorical" else (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and (spec.type == "float" or value == int(value))
                and allowed[0] <= value <= allowed[1])
            if not ok:
                rule = (f"one of {allowed}" if spec.type == "categorical"
                        else f"{spec.type} in [{allowed[0]}, {allowed[1]}]")
                raise SpaceError(f"{where}.{key}: {value!r} is outside the space ({rule})")
    return points


def suggest(trial: optuna.Trial, params) -> dict[str, Any]:
    """One point of the space, as {config key: value}."""
    values: dict[str, Any] = {}
    for key, spec in params.items():
        kind, log, step = spec.type, bool(spec.get("log")), spec.get("step")
        if kind == "categorical":
            values[key] = trial.suggest_categorical(key, list(spec.choices))
        elif kind == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=log,
                                            step=int(step) if step else 1)
        else:
            values[key] = trial.suggest_float(key, float(spec.low), float(spec.high), log=log,
                                              step=float(step) if step and not log else None)
    return values


def apply(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of `cfg` with `sweep.fixed` and then `values` set (typed: a float for an int key
    fails here): the config a trial with these values trains with."""
    out = copy.deepcopy(cfg)
    fixed = OmegaConf.to_container(cfg.sweep.fixed, resolve=True) if cfg.sweep.get("fixed") else {}
    for key, value in {**fixed, **values}.items():
        OmegaConf.update(out, key, value, merge=False)
    return out

