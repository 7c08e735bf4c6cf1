"""The commands: thin `@hydra.main` wrappers over the library, in one place.

    python -m ids.run | ids.sweep | ids.promote | ids.evaluate | ids.predict | ids.serve  [overrides]

Each of those modules is a two-line entry point that calls `cli.<command>()`; the work is done
by plain functions (`ids.experiment.train.train`, `ids.tuning.sweep.sweep`,
`ids.tuning.promote.promote`, `ids.experiment.evaluate.evaluate`, `ids.serving.predict.predict`,
`ids.serving.http.serve`)
that tests and notebooks call directly. Every command
shares one interrupt path (SIGTERM and SIGHUP unwind like Ctrl-C, so MLflow runs end KILLED and
partial files are removed) and one error path: whatever the outside world did (bad input or
settings, a damaged file, a full disk, a closed stream, an unwritable store, Hydra's own errors)
ends with one line on stderr naming the problem and the fix, passwords redacted, exit code 2,
no traceback; only a bug prints a (redacted) traceback, with exit code 1.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn

import hydra
import optuna
import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from sqlalchemy import exc as sa_exc

from ids import outputs, progress
from ids.artifact.modelfile import ModelFormatError
from ids.config import CONF_DIR, ConfigError
from ids.data.flows import DataError
from ids.evaluation.metrics import ScoreError
from ids.experiment import lineage
from ids.experiment.evaluate import evaluate as run_evaluate
from ids.experiment.train import report_text, train
from ids.model.fit import NonFiniteLoss
from ids.serving.http import serve as run_serve
from ids.serving.predict import predict as run_predict
from ids.tracking import database, signals, store
from ids.tracking import redact as redaction
from ids.tracking.redact import redact
from ids.tracking.registry import RegistryError
from ids.tuning.promote import promote as run_promote
from ids.tuning.promote import summary_text
from ids.tuning.report import print_summary
from ids.tuning.sweep import sweep as run_sweep

KNOWN_ERRORS = (ConfigError, DataError, RegistryError, ScoreError, ModelFormatError, NonFiniteLoss)
_BUGS = (AttributeError, TypeError, NameError, LookupError, AssertionError, ZeroDivisionError)


def fail(exc: BaseException | str) -> NoReturn:
    """Known bad input: one line that names the problem and the fix (secrets redacted)."""
    one_line = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if sys.stderr is not None:
        print(f"error: {redact(one_line)}", file=sys.stderr)
    sys.exit(2)


def problem(exc: BaseException) -> str | None:
    """The one line for what the outside world did (bad input or settings, a damaged file, an OS
    error such as a full disk or a closed stream, a database that cannot be written, Hydra's
    own override and composition errors); None for a bug, which keeps its traceback."""
    if isinstance(exc, KNOWN_ERRORS):
        return str(exc)
    if isinstance(exc, yaml.YAMLError):  # a damaged config.yaml of a run, a preset
        return f"a YAML file could not be read ({' '.join(str(exc).split())[:300]})"
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        lines = [ln for ln in str(exc).splitlines() if ln.strip()][:3]
        return " ".join(lines) + " (`--cfg job` prints every key and its value)"
    first, seen = exc, 0
    while exc is not None and not isinstance(exc, _BUGS) and seen < 10:  # the OS, a database
        if isinstance(exc, OSError):
            where = f"{exc.filename}: " if exc.filename else _stream(exc)
            return f"{where}{outputs.os_problem(exc)}"
        if isinstance(exc, sa_exc.OperationalError):
            return (f"a database could not be used ({database.root_cause(exc)}); check that its "
                    "disk has space and that it can be written")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return store.store_problem(first)


def _stream(exc: OSError) -> str:
    return "the output stream was closed: " if isinstance(exc, BrokenPipeError) else ""


def _guarded(entry: Callable[[], None]) -> None:
    """Run a Hydra entry point with every failure on the one error path: Hydra raises its own
    errors here (HYDRA_FULL_ERROR) instead of printing them with the command line, which may
    hold a password."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    redaction.install()
    try:
        entry()
    except BaseException as exc:
        signalled = isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, SystemExit) and exc.code not in (None, 0, 1, 2))
        store.end_active_runs(killed=signalled)  # last resort: no run stays RUNNING
        if isinstance(exc, KeyboardInterrupt):
            if sys.stderr is not None:
                print("error: interrupted (Ctrl-C); a run it had started was ended KILLED and "
                      "partial files were removed", file=sys.stderr)
            sys.exit(130)
        if not isinstance(exc, Exception):
            raise  # SystemExit: fail() has spoken, or a signal ended the command
        _exit_for(exc)
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def _exit_for(exc: Exception) -> NoReturn:
    """One line and exit code 2 for a `problem`; a bug prints its traceback, redacted, exit 1."""
    if isinstance(exc, BrokenPipeError) or isinstance(exc.__context__, BrokenPipeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout is gone: exit without flushing
    line = problem(exc)
    if line is not None:
        fail(line)
    if sys.stderr is not None:
        sys.stderr.write(redaction.traceback_text(exc))
    sys.exit(1)


def _flush(stream) -> None:
    if stream is not None and not stream.closed:
        stream.flush()  # a full disk or a closed pipe shows here, not as "Exception ignored"


def command(body: Callable[[DictConfig], None]) -> Callable[[], None]:
    """`body(cfg)` as a Hydra command with the shared interrupt and error paths."""

    @functools.wraps(body)
    def main(cfg: DictConfig) -> None:
        signals.end_runs_killed_on_sigterm()
        redaction.install()  # again: Hydra has set up its log handlers by now
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        progress.configure(bool(cfg.quiet))
        try:  # here, not through Hydra: it would print the command line with the error
            body(cfg)
            _flush(sys.stdout)
        except Exception as exc:  # noqa: BLE001 - the one error path
            _exit_for(exc)

    hydra_main = hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(main)

    @functools.wraps(body)
    def entry() -> None:
        _guarded(hydra_main)

    return entry


def _store_line(what: str, run_id: str, cfg: DictConfig) -> str:
    return (f"\nMLflow {what} {run_id} in {redact(cfg.tracking.uri)} "
            f"(experiment '{cfg.tracking.experiment}'); browse with `make ui`.")


@command
def run(cfg: DictConfig) -> None:
    """One training run, its test report and where it was logged."""
    summary = train(cfg)
    print(report_text(cfg, summary))
    if "run_id" in summary:
        print(_store_line("run", summary["run_id"], cfg))


@command
def sweep(cfg: DictConfig) -> None:
    """Run or resume the Optuna study, then print its summary."""
    print_summary(cfg, run_sweep(cfg), lineage.cli_overrides())


@command
def promote(cfg: DictConfig) -> None:
    """Register the best trial, move the aliases, print the test report."""
    result = run_promote(cfg, overrides=lineage.cli_overrides())
    print(summary_text(cfg, result))
    ev = result.get("evaluation")
    if ev:
        print()
        print(ev["report"])
        if ev["run_id"]:
            print(_store_line("evaluation run", ev["run_id"], cfg))
    print(f"\nload it with models:/{result['name']}@{result['alias']} "
          f"(python -m ids.evaluate / ids.predict use it by default)")


@command
def evaluate(cfg: DictConfig) -> None:
    """Score a model on its own test split (or `input=FILE`) and print the report."""
    result = run_evaluate(cfg, overrides=lineage.cli_overrides())
    print(result["report"])
    if result["run_id"]:
        print(_store_line("evaluation run", result["run_id"], cfg))


@command
def predict(cfg: DictConfig) -> None:
    """Score a file (or a stream with input=-/output=-) and say where the scores went."""
    run_predict(cfg)


@command
def serve(cfg: DictConfig) -> None:
    """Serve a model (default: the champion) over HTTP until interrupted."""
    run_serve(cfg)
