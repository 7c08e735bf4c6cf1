"""The commands' shared shell: `command`, the `@hydra.main` wrapper every command is made with.

    python -m ids.run | ids.sweep | ids.promote | ids.evaluate | ids.predict | ids.serve  [overrides]

Each of those modules is one command: a few lines made with `@command` over a plain function of
the library (`ids.experiment.train.train`, `ids.tuning.sweep.sweep`, `ids.tuning.promote.promote`,
`ids.experiment.evaluate.evaluate`, `ids.serving.predict.predict`, `ids.serving.http.serve`)
that tests and notebooks call directly. A command imports only its own stack (`ids.predict`
loads no training, tuning or Optuna), so it starts in the time its work needs. Every command
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
import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from sqlalchemy import exc as sa_exc

from ids import outputs, progress
from ids.config import CONF_DIR, InputError, validate
from ids.tracking import database, signals, store
from ids.tracking import redact as redaction
from ids.tracking.redact import redact

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
    if isinstance(exc, InputError):  # settings, data, models, registries, scores, divergence
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
        progress.configure(bool(cfg.quiet))
        try:  # here, not through Hydra: it would print the command line with the error
            validate(cfg)  # every setting, before any work (each command reads its own part)
            body(cfg)
            _flush(sys.stdout)
        except Exception as exc:  # noqa: BLE001 - the one error path
            _exit_for(exc)

    hydra_main = hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(main)

    @functools.wraps(body)
    def entry() -> None:
        _guarded(hydra_main)

    return entry


def store_line(what: str, run_id: str, cfg: DictConfig) -> str:
    """Where a command logged its run, and how to browse it."""
    return (f"\nMLflow {what} {run_id} in {redact(cfg.tracking.uri)} "
            f"(experiment '{cfg.tracking.experiment}'); browse with `make ui`.")
