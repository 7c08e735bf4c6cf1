"""A model is evaluated on the data it was trained for.

The record of truth is the resolved config its training run logged (`config.yaml`, read by
`ids.tracking.registry.logged_config`). `ids.evaluate` rebuilds "the test split" from the model's data
config and `ids.promote` takes the trial's data/model/trainer config from the trial's run, not
from today's command line. A data setting given on the command line that differs from the
model's is an error naming the key and both values; scoring another file stays possible and
explicit with `input=...`.
"""

from __future__ import annotations

import copy
import os

from omegaconf import DictConfig, OmegaConf, open_dict

from ids.config import ConfigError

# Trainer keys that describe how to run today, not what the model is: kept from the command line.
RUNTIME_TRAINER_KEYS = ("baselines", "baseline_seeds", "evaluate_test", "threads", "mode",
                        "eval_batch_size", "checkpoint_dir")


def explicit_data_keys(overrides: list[str] | None) -> set[str]:
    """Data keys the command line set: `data.x=...` -> x; `data=...` or an experiment overlay
    -> source (the group names the kind of data; its other defaults, e.g. the window a sweep
    varied, are not a choice the user made); `seed=...` -> seed (data.seed follows it)."""
    keys: set[str] = set()
    for item in overrides or []:
        key = item.lstrip("~+").split("=", 1)[0].strip()
        if key in ("data", "experiment") or key.startswith(("data/", "experiment/")):
            keys.add("source")
        elif key.startswith("data."):
            keys.add(key.split(".")[1])
        elif key == "seed":
            keys.add("seed")
    return keys


def _moved(given, model_path) -> bool:
    """The model's data file is not where its run saw it (another folder or machine) and the
    given one exists: take the given file; the content hash check in ids.experiment.evaluate decides."""
    return bool(given and model_path and os.path.exists(str(given))
                and not os.path.exists(str(model_path)))


def _same(key: str, a, b) -> bool:
    if key == "path" and a and b and os.path.exists(str(a)) and os.path.exists(str(b)):
        return os.path.realpath(str(a)) == os.path.realpath(str(b))
    if key == "path" and _moved(a, b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(key, x, y) for x, y in zip(a, b, strict=True))
    return a == b


def conflicts(cfg: DictConfig, model_cfg: DictConfig, overrides: list[str] | None) -> list[str]:
    """'data.split=contiguous (the model: chunks)' for every command-line data setting that
    differs from the model's."""
    keys = explicit_data_keys(overrides)
    mine = OmegaConf.to_container(cfg.data, resolve=True)
    theirs = OmegaConf.to_container(model_cfg.data, resolve=True)
    names = sorted(k for k in keys if k in theirs)
    if "seed" in keys and "seed" not in names:
        names.append("seed")
    out = [f"data.{k}={mine.get(k)!r} (the model's: {theirs.get(k)!r})"
           for k in names if not _same(k, mine.get(k), theirs.get(k))]
    if "seed" in keys and int(cfg.seed) != int(model_cfg.seed):
        out.append(f"seed={cfg.seed!r} (the model's: {model_cfg.seed!r})")
    return out


def check(cfg: DictConfig, model_cfg: DictConfig, overrides: list[str] | None,
          what: str) -> None:
    """ConfigError naming every command-line data setting that differs from the model's."""
    bad = conflicts(cfg, model_cfg, overrides)
    if bad:
        raise ConfigError(f"{what} was trained on other data settings than the command line "
                          f"gives: {'; '.join(bad)}. Drop those overrides (its own data config "
                          "is used), or score another file explicitly with input=...")


def adopt(cfg: DictConfig, model_cfg: DictConfig, groups=("data",),
          overrides: list[str] | None = None) -> DictConfig:
    """`cfg` with the model's seed and `groups` (data, model, trainer) put in; the trainer's
    runtime keys stay as given today. Without 'trainer' in groups the model's
    selection_metric and cv_folds are still taken (the baselines' threshold follows the one,
    what they are fitted on the other). A data.path given
    explicitly is kept when the model's file is not there (see `_moved`)."""
    out = copy.deepcopy(cfg)  # DictConfig.copy() shares child nodes with the caller's cfg
    with open_dict(out):
        out.seed = model_cfg.seed
        for group in groups:
            node = model_cfg[group].copy()
            if group == "trainer":
                for key in RUNTIME_TRAINER_KEYS:
                    node[key] = cfg.trainer[key]
            out[group] = node
        if "trainer" not in groups:  # what the baselines are fitted and tuned like
            out.trainer.selection_metric = model_cfg.trainer.selection_metric
            out.trainer.cv_folds = int(model_cfg.trainer.get("cv_folds", 0) or 0)
        keys = explicit_data_keys(overrides)
        if ("path" in keys or "source" in keys) and _moved(cfg.data.path, model_cfg.data.path):
            out.data.path = cfg.data.path
    return out


def cli_overrides() -> list[str] | None:
    """The command line's overrides when running under @hydra.main, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, ImportError):
        return None
