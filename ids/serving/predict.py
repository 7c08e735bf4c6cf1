"""`ids.predict`: score a file, or a stream with `input=-` / `output=-`, with a model.

    python -m ids.predict input=flows.csv output=alerts.csv       # models:/ids-cnn-bilstm@champion
    zcat flows.csv.gz | python -m ids.predict input=- output=- > scored.csv
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from ids import outputs, progress
from ids.artifact import memo
from ids.config import ConfigError
from ids.model.runtime import setup_runtime
from ids.serving import stream
from ids.serving.files import score_file
from ids.tracking import database, registry

SQLITE_FILES = ("", "-journal", "-wal", "-shm")  # a database and its journals


def kept_out(cfg: DictConfig, uri: str) -> tuple[tuple[str, str], ...]:
    """What an output may not be inside: the prepared store, a model folder being read, the
    MLflow and Optuna SQLite stores (`ids.outputs.check`)."""
    out = [(str(cfg.cache_dir), "the prepared store (cache_dir)")] if cfg.cache_dir else []
    if not registry.needs_store(uri) and "://" not in uri.removeprefix("file://"):
        out.append((uri.removeprefix("file://"), "the model folder (model_uri)"))
    for key, db in (("tracking.uri", database.sqlite_path(str(cfg.tracking.uri))),
                    ("sweep.storage", database.sqlite_path(str(cfg.sweep.storage)))):
        if db is not None:
            out += [(f"{db}{end}", f"the SQLite store of {key}") for end in SQLITE_FILES]
    return tuple(out)


def predict(cfg: DictConfig) -> None:
    """Score `cfg.input` into `cfg.output` with the model (default: the champion), or stream
    with input=- / output=- (`ids.serving.stream`); print what was scored and where it went."""
    uri = registry.default_model_uri(cfg)
    streaming = "-" in (str(cfg.input), str(cfg.output))  # standard input/output: ids.serving.stream
    progress.configure(cfg.quiet or streaming)
    if not cfg.input or not cfg.output:
        raise ConfigError("input and output are required: python -m ids.predict "
                          "input=flows.csv output=alerts.csv [model_uri=...]")
    if cfg.alerts_only and not streaming:
        raise ConfigError("alerts_only=true applies to streaming (input=- output=-); for a "
                          "file, filter the output on its label column")
    keep_out = kept_out(cfg, uri)
    if str(cfg.output) != "-":  # files and streams alike, before the model loads
        outputs.check(cfg.output, overwrite=bool(cfg.overwrite), inputs=(cfg.input,),
                      keep_out=keep_out)
    kept = memo.from_config(cfg.score_memo_mb)  # a bad value fails before the model loads
    if registry.needs_store(uri):
        registry.connect(cfg.tracking.uri)
    setup_runtime(cfg.trainer)
    ref = registry.resolve_model(uri)
    progress.step(f"loading {ref.label}")
    scorer = registry.load_scorer(ref)
    scorer.memo = kept  # allocated on first use
    if streaming:
        return stream.main(cfg, scorer, ref, keep_out)
    started = time.perf_counter()
    n, alerts = score_file(scorer, cfg.input, cfg.output, int(cfg.chunk_size),
                           bool(cfg.overwrite), keep_out=keep_out,
                           max_hosts=int(cfg.score_max_hosts))
    seconds = time.perf_counter() - started
    by = "" if scorer.window_by == "none" else f" over each {scorer.window_by}'s flows"
    by += ", with each source's time gap" if scorer.time_gap else ""
    print(f"scored {n:,} flows of {cfg.input} with {ref.label} (window {scorer.window}{by}, "
          f"threshold {scorer.threshold:.4f}) in {seconds:.1f} s "
          f"({n / max(seconds, 1e-9):,.0f} flows/s)")
    print(f"attack alerts: {alerts:,} ({alerts / n:.2%}); written to {cfg.output}")
    print(f"windows computed: {kept.misses:,}; looked up, seen in an earlier block: "
          f"{kept.hits:,} (score_memo_mb={cfg.score_memo_mb}); copies within a block: "
          f"{n - kept.misses - kept.hits:,}")
