"""Typed configuration schema.

The dataclasses below are registered in Hydra's ConfigStore as the schema of `conf/config.yaml`,
so an unknown key or a wrong type fails when the config is composed, before any work starts.
`validate(cfg)` then checks value ranges that types cannot express and names the offending key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

# NF-BoT-IoT v1 class mix (Attack column counts in the 600,100-flow file).
NF_BOT_IOT_MIX = {
    "Benign": 13859,
    "DDoS": 56844,
    "DoS": 56833,
    "Reconnaissance": 470655,
    "Theft": 1909,
}

# The synthetic default: NF-BoT-IoT's attack categories in its proportions, with 8 % benign
# flows instead of 2.3 %, so that the validation and test splits of 100,000 flows hold about
# 1,200 benign flows each (a val objective resolved to ~0.001, not one flow in 167).
SYNTHETIC_MIX = {**NF_BOT_IOT_MIX, "Benign": 51000}


@dataclass
class DataConfig:
    source: str = "synthetic"  # synthetic | synthetic_v3 (hosts and time) | nf_bot_iot (a file)
    path: str | None = None  # nf_bot_iot: CSV, CSV.gz, zip (one CSV inside) or parquet
    n_flows: int = 100_000  # synthetic: number of flows to generate
    class_mix: dict[str, float] = field(default_factory=lambda: dict(SYNTHETIC_MIX))
    seed: int = 0  # synthetic generator and chunk assignment
    window: int = 10  # T: flows per sample (flow i and the T-1 before it, same split)
    window_by: str = "none"  # none: the previous rows | host: same source | pair: same src+dst
    order: str = "auto"  # auto: time where flows have start times (NF-v3), else file | time | file
    time_gap: bool = False  # NF-v3: add HOST_GAP_MS, HOST_FIRST (time since the source's last flow)
    split: str = "contiguous"  # contiguous | chunks
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    chunk_size: int = 5_000  # split=chunks: flows per contiguous chunk
    keep_identifiers: bool = False  # True keeps IPs/ports as features (they leak the label)
    l7_top_k: int = 16  # L7_PROTO values one-hot encoded (most frequent in train), rest -> other
    numeric_bins: int = 0  # > 0: piecewise-linear bins of each numeric column (train quantiles)
    numeric_top_k: int = 0  # > 0: indicators of each numeric column's K most frequent train values
    max_rows: int | None = None  # read only the first N rows of a file (quick experiments)
    dedup: str = "none"  # none | exact: drop exact duplicate flows (features + labels) first
    max_train_flows: int | None = None  # train on a stratified seeded subset of this many flows


@dataclass
class ModelConfig:
    conv_layers: int = 2  # Conv1d + ReLU + MaxPool + Dropout blocks
    filters: int = 64  # channels of every conv block
    kernel_size: int = 3
    pool_size: int = 2  # MaxPool1d kernel and stride; skipped when the sequence is too short
    dropout: float = 0.2
    lstm_units: int = 64  # hidden size per direction
    lstm_layers: int = 1
    dense_units: int = 0  # 0 = the BiLSTM state goes straight to the output logit
    lstm_impl: str = "unrolled"  # unrolled | fused (nn.LSTM): same network and weights


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 256
    eval_batch_size: int = 4096
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (per step, to lr / 100 at the last epoch)
    weight_decay: float = 0.0
    class_weight: str = "none"  # none | balanced (weights the loss by inverse class frequency)
    patience: int = 3  # epochs without validation improvement before stopping; 0 = never
    selection_metric: str = "mcc"  # metric the threshold, best epoch and sweep maximise on val
    mode: str = "graph"  # graph | pynative
    threads: int = 0  # CPU threads for MindSpore; 0 = all cores / number of workers
    distinct: str = "auto"  # auto | on | off: train and score each distinct window once
    epoch_flows: int = 0  # > 0: an epoch trains on this many flows (fresh ones each epoch); 0 = all
    evaluate_test: bool = True  # score the test split at the end (False inside sweeps)
    baselines: bool = True  # score the trivial and Extra-Trees baselines on the same flows
    baseline_seeds: int = 3  # Extra-Trees forests (seeds seed, seed+1, ...) of a test report
    cv_folds: int = 0  # k >= 2: k-fold CV over train+val, the champion is the fold models' bag
    checkpoint_dir: str | None = None  # None = a temporary folder (the model goes to MLflow)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlruns/mlflow.db"
    experiment: str = "ids"
    run_name: str | None = None
    log_model: bool = True
    log_plots: bool = True


@dataclass
class ParamSpec:
    type: str = MISSING  # int | float | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None


@dataclass
class SweepConfig:
    study: str = "cnn_bilstm"
    storage: str = "sqlite:///sweeps/optuna.db"
    n_trials: int = 20  # finished (COMPLETE or PRUNED) trials wanted in the study, in total
    workers: int = 1
    sampler: str = "tpe"  # tpe | random | qmc
    pruner: str = "median"  # median | percentile | hyperband | successive_halving | threshold | none
    pruner_warmup_epochs: int = 2  # epochs never pruned: the first prunable epoch is this + 1
    pruner_startup_trials: int = 5  # finished trials before the median/percentile pruner acts
    pruner_args: dict[str, Any] = field(default_factory=dict)  # extra kwargs for the pruner
    seed: int = 0
    heartbeat_seconds: int = 30
    max_retry: int = 1  # a trial of a killed worker is retried this many times
    max_failures: int = 5  # stop the sweep after this many failed trials in a row
    timeout_seconds: float | None = None
    export_dir: str = "sweeps"
    log_artifacts: str = "best"  # best: plots and model only for trials leading when done | all
    prune_on: str = "metric"  # what the pruner compares: metric | loss | balanced_loss | roc_auc | pr_auc
    params: dict[str, ParamSpec] = field(default_factory=dict)  # config key -> search range
    fixed: dict[str, Any] = field(default_factory=dict)  # config key -> value of every trial
    start_points: list[dict[str, Any]] = field(default_factory=list)  # tried first, in order


@dataclass
class PromoteConfig:
    model_name: str = "ids-cnn-bilstm"
    alias: str = "champion"
    previous_alias: str = "previous"
    evaluate: bool = True
    trial: int | None = None  # promote this COMPLETE trial instead of the best


@dataclass
class ServeConfig:
    """`ids.serve` (`make serve`): where it listens and how many processes score."""

    host: str = "127.0.0.1"
    port: int = 5001
    workers: int = 0  # scoring processes; 0: one per core
    threads: int = 0  # MindSpore kernel threads per worker; 0: cores / workers
    max_body_mb: int = 16  # the largest request body, in MiB (413 beyond it)


@dataclass
class Config:
    seed: int = 0
    cache_dir: str | None = "sweeps/cache"  # prepared data on disk (ids.data.cache); null = off
    quiet: bool = False  # no progress bars or per-epoch lines (reports are still printed)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    paper: dict[str, Any] = field(default_factory=dict)  # claimed figures, set by experiment=paper
    # Entry-point arguments (ids.evaluate / ids.predict / ids.serve); ignored by other commands.
    model_uri: str | None = None
    input: str | None = None
    output: str | None = None
    chunk_size: int = 100_000
    overwrite: bool = False  # ids.predict: replace an existing output file
    alerts_only: bool = False  # ids.predict input=- output=-: write only flows labelled attack
    score_memo_mb: int = 256  # ids.predict / ids.serve: MB per scorer for scores of windows
    # already seen (ids.artifact.memo), kept across chunks, stream batches and requests; 0: off
    score_max_hosts: int = 50_000  # a model with data.window_by=host|pair: hosts (or pairs)
    # whose last window-1 flows are kept across chunks, lines and requests; least recent dropped


def register() -> None:
    """Register the schema; called on import so every entry point and test gets it."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)


register()

SAMPLERS = ("tpe", "random", "qmc")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "threshold", "none")
PRUNE_SIGNALS = ("metric", "loss", "balanced_loss", "roc_auc", "pr_auc")
SELECTION_METRICS = ("f1", "mcc", "balanced_accuracy", "precision", "recall", "accuracy")
MAX_BASELINE_SEEDS = 20  # each seed is one more Extra-Trees fit per report
MAX_MEMBERS = 20  # cross-validation folds: the bag's networks, each scored for every flow


def baseline_seeds(cfg) -> list[int]:
    """The seeds of a report's Extra-Trees forests: seed, seed + 1, ... (the first is the one
    forest of trainer.baseline_seeds=1, and of every sweep trial)."""
    return [int(cfg.seed) + i for i in range(int(cfg.trainer.baseline_seeds))]


def cv_folds(cfg) -> int:
    """`trainer.cv_folds` of a config (0: none; configs logged before it existed have none)."""
    return int(cfg.trainer.get("cv_folds", 0) or 0)


class InputError(Exception):
    """What the outside world got wrong (a setting, a file, a model, a store, diverging data):
    every error of this kind names the problem and the fix, and the commands print it as one
    line with exit code 2, no traceback (`ids.cli`)."""


class ConfigError(InputError, ValueError):
    """A configuration value is out of its allowed range; the message names the key."""


@cache
def _schema() -> DictConfig:
    """The schema as a DictConfig, built once (read it, never change it): building it walks
    every dataclass, and `validate` runs before every command and every trial."""
    return OmegaConf.structured(Config)


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, but got {value!r}")


def unknown_keys(cfg: DictConfig, schema: DictConfig | None = None, prefix: str = "") -> list[str]:
    """Keys that `+key=value` appended outside the schema (free-form dicts such as
    `data.class_mix` or `sweep.params` excepted): nothing would read them."""
    import dataclasses

    schema = _schema() if schema is None else schema
    out = []
    for key in cfg:
        if key not in schema:
            out.append(f"{prefix}{key}")
            continue
        node = schema[key]
        if isinstance(node, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(node)):
            out += unknown_keys(cfg[key], node, f"{prefix}{key}.")
    return out


MAX_LAYERS = 64  # conv or LSTM layers: each is a compiled block (sizes: `ids.artifact.bounds`)


def check_model(m: Any, prefix: str = "model.") -> None:
    """The value ranges of a model section (a config's, or a model file's settings)."""
    _check(0 <= m.conv_layers <= MAX_LAYERS, f"{prefix}conv_layers", f"in [0, {MAX_LAYERS}]",
           m.conv_layers)
    _check(m.filters >= 1, f"{prefix}filters", ">= 1", m.filters)
    _check(m.kernel_size >= 1, f"{prefix}kernel_size", ">= 1", m.kernel_size)
    _check(m.pool_size >= 1, f"{prefix}pool_size", ">= 1", m.pool_size)
    _check(0 <= m.dropout < 1, f"{prefix}dropout", "in [0, 1)", m.dropout)
    _check(m.lstm_units >= 1, f"{prefix}lstm_units", ">= 1", m.lstm_units)
    _check(1 <= m.lstm_layers <= MAX_LAYERS, f"{prefix}lstm_layers", f"in [1, {MAX_LAYERS}]",
           m.lstm_layers)
    _check(m.dense_units >= 0, f"{prefix}dense_units", ">= 0", m.dense_units)
    _check(m.lstm_impl in ("unrolled", "fused"), f"{prefix}lstm_impl", "unrolled or fused",
           m.lstm_impl)


SEED_MAX = 2**32 - 1  # numpy and MindSpore take 32-bit seeds
INT_MAX = 2**62  # no setting needs more; numpy, SQLite and MindSpore overflow near 2**63
MAX_PER_CORE = 4  # processes or threads per core a setting may ask for
FLOW_BYTES = 1024  # memory per synthetic flow while it is prepared (measured: ~600)


def _per_core() -> int:
    return MAX_PER_CORE * (os.cpu_count() or 1)


# Numeric settings: key -> (lowest, highest, what the lowest means); None: no bound on that
# side, a callable: a bound of this machine. Every number anywhere in a config must also be
# finite (`_finite`).
RANGES: dict[str, tuple[Any, Any, str]] = {
    "seed": (0, SEED_MAX - MAX_BASELINE_SEEDS, "seed + i seeds the i-th baseline forest"),
    "data.seed": (0, SEED_MAX, ""), "sweep.seed": (0, SEED_MAX, ""),
    "data.n_flows": (100, lambda: memory_budget() // FLOW_BYTES,
                     f"{FLOW_BYTES} bytes of the memory available here a flow"),
    "data.window": (1, None, ""), "data.chunk_size": (1, None, ""),
    "data.l7_top_k": (0, None, ""), "data.numeric_bins": (0, 256, ""),
    "data.numeric_top_k": (0, 256, ""),
    "data.max_rows": (1, None, "null: the whole file"),
    "data.max_train_flows": (1, None, "null: every training flow"),
    "trainer.epochs": (1, 1_000_000, ""), "trainer.batch_size": (1, None, ""),
    "trainer.eval_batch_size": (1, None, ""), "trainer.patience": (0, None, "0: never stop"),
    "trainer.threads": (0, _per_core, f"0: cores / workers; at most {MAX_PER_CORE} a core"),
    "trainer.epoch_flows": (0, None, "0: every training flow"),
    "trainer.baseline_seeds": (1, MAX_BASELINE_SEEDS, "1: one forest"),
    "trainer.cv_folds": (0, MAX_MEMBERS, "0: no cross-validation (1 is refused)"),
    "sweep.n_trials": (1, 1_000_000, ""),
    "sweep.workers": (1, _per_core, f"at most {MAX_PER_CORE} a core"),
    "sweep.max_failures": (1, None, ""), "sweep.max_retry": (0, 1000, "0: never retried"),
    "sweep.pruner_warmup_epochs": (0, None, ""), "sweep.pruner_startup_trials": (0, None, ""),
    "sweep.heartbeat_seconds": (1, 86_400, ""),
    "sweep.timeout_seconds": (1e-3, 366 * 86_400.0, "null: no time limit"),
    "promote.trial": (0, 2**31 - 1, "null: the best trial"),
    "serve.port": (1, 65_535, ""),
    "serve.workers": (0, _per_core, f"0: one per core; at most {MAX_PER_CORE} a core"),
    "serve.threads": (0, _per_core, f"0: cores / workers; at most {MAX_PER_CORE} a core"),
    "serve.max_body_mb": (1, 4096, ""),
    "chunk_size": (1, None, ""), "score_memo_mb": (0, None, "0: no memo"),
    "score_max_hosts": (1, None, ""),
}


def validate(cfg: Config | DictConfig) -> None:
    """Check keys and value ranges before any work starts; raise ConfigError naming the key."""
    if isinstance(cfg, DictConfig) and (extra := unknown_keys(cfg)):
        raise ConfigError(f"unknown config key(s) {', '.join(extra)}: nothing reads them. Check "
                          "the spelling (`python -m ids.run --cfg job` lists every key)")
    for key, (low, high, note) in RANGES.items():
        _in_range(key, _get(cfg, key), low, high() if callable(high) else high, note)
    _finite(cfg)
    d, m, t, s = cfg.data, cfg.model, cfg.trainer, cfg.sweep
    _check(d.source in ("synthetic", "synthetic_v3", "nf_bot_iot"), "data.source",
           "synthetic, synthetic_v3 or nf_bot_iot", d.source)
    _check(d.window_by in ("none", "host", "pair"), "data.window_by", "none, host or pair",
           d.window_by)
    _check(d.order in ("auto", "time", "file"), "data.order", "auto, time or file", d.order)
    _check(not getattr(d, "time_gap", False) or d.source != "synthetic", "data.time_gap",
           "false with data.source=synthetic (v1 flows have no start times or addresses: use "
           "data=nf_v3 or an NF-v3 file)", getattr(d, "time_gap", False))
    _check(d.split in ("contiguous", "chunks"), "data.split", "contiguous or chunks", d.split)
    fr = list(d.split_fractions)
    _check(len(fr) == 3 and all(f > 0 for f in fr) and abs(sum(fr) - 1) < 1e-6,
           "data.split_fractions", "three positive fractions summing to 1", fr)
    _check(d.dedup in ("none", "exact"), "data.dedup", "none or exact", d.dedup)
    mix = dict(d.class_mix or {})
    _check(all(isinstance(v, (int, float)) and v >= 0 for v in mix.values())
           and sum(mix.values()) > 0, "data.class_mix", "weights >= 0, not all 0", mix)
    check_model(m)
    _check(t.lr > 0, "trainer.lr", "> 0", t.lr)  # finite (`_finite`); a huge one diverges,
    _check(t.weight_decay >= 0, "trainer.weight_decay", ">= 0", t.weight_decay)  # one line
    _check(t.class_weight in ("none", "balanced"), "trainer.class_weight", "none or balanced", t.class_weight)
    _check(t.selection_metric in SELECTION_METRICS, "trainer.selection_metric",
           f"one of {', '.join(SELECTION_METRICS)}", t.selection_metric)
    _check(t.lr_schedule in ("constant", "cosine"), "trainer.lr_schedule", "constant or cosine",
           t.lr_schedule)
    _check(t.cv_folds != 1, "trainer.cv_folds", "0 (none) or 2 and more folds", t.cv_folds)
    _check(not t.cv_folds or not d.get("max_train_flows"), "trainer.cv_folds",
           "0 with data.max_train_flows (the folds cut every flow outside test)", t.cv_folds)
    _check(t.mode in ("graph", "pynative"), "trainer.mode", "graph or pynative", t.mode)
    _check(t.distinct in ("auto", "on", "off"), "trainer.distinct", "auto, on or off",
           t.distinct)
    _check(s.sampler in SAMPLERS, "sweep.sampler", f"one of {', '.join(SAMPLERS)}", s.sampler)
    _check(s.pruner in PRUNERS, "sweep.pruner", f"one of {', '.join(PRUNERS)}", s.pruner)
    _check(s.prune_on in PRUNE_SIGNALS, "sweep.prune_on", f"one of {', '.join(PRUNE_SIGNALS)}",
           s.prune_on)
    _check(s.log_artifacts in ("best", "all"), "sweep.log_artifacts", "best or all",
           s.log_artifacts)


def _get(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
    return node


def _in_range(key: str, value: Any, low, high, note: str) -> None:
    """ConfigError unless `value` is None (where `note` says what null means) or a number in
    [low, high]; the message says the range in the form of the rule that failed."""
    if value is None and note.startswith("null"):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, but got {value!r}")
    rule = f">= {low}" if high is None else f"in [{low}, {high:,}]"
    if note.startswith("null: "):
        rule = f"null ({note[6:]}) or {rule}"
    elif note:
        rule += f" ({note})"
    _check(low <= value and (high is None or value <= high), key, rule, value)


def _finite(node: Any, path: str = "") -> None:
    """ConfigError naming the first number that is not finite (nan, inf) or beyond INT_MAX,
    wherever it is: ranges, class weights, search ranges, start points, pruner arguments."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        node = dataclasses.asdict(node)
    if isinstance(node, dict):
        for key, value in node.items():
            _finite(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _finite(value, f"{path}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{path} must be a finite number, but got {node!r}")
    elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > INT_MAX:
        raise ConfigError(f"{path} must be at most {INT_MAX:,} in size, but got {node!r}")


def memory_budget() -> int:
    """Bytes of memory available now (MemAvailable; the physical size where it is unknown):
    the bound of settings that allocate by size (`data.n_flows` here; model sizes and
    `score_memo_mb` where they are used)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def typed(raw: DictConfig) -> DictConfig:
    """`seed`, `data`, `model`, `trainer` of a logged config, typed by today's schema (keys the
    schema no longer has are dropped, new keys get their defaults)."""
    schema = _schema()
    out = OmegaConf.create({"seed": int(raw.get("seed", 0))})
    for group in ("data", "model", "trainer"):
        node = raw.get(group) or {}
        known = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()
                 if k in schema[group]} if node else {}
        out[group] = OmegaConf.merge(schema[group], known)
    return out


CONF_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides, outside `@hydra.main` (tests, workers,
    the bench). A process composes the same overrides once (about 0.1 s each: a bench or a test
    session composes hundreds); every call gets its own copy to change."""
    return copy.deepcopy(_composed(tuple(overrides or ())))


@lru_cache(maxsize=128)
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    """Hydra's compose: the config files do not change while a process runs, and interpolations
    (`${oc.env:...}`, `${seed}`) stay unresolved in the result, read where they are used."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
