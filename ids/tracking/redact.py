"""Passwords out of everything ids logs or prints: URIs with `user:password@`, `password=...`
settings, and the values of secret environment variables (PGPASSWORD, MLFLOW_TRACKING_PASSWORD).

Every command's error line, every param, tag, artifact and model config goes through `redact`;
`install()` puts it in front of what libraries print too (standard output and error, so
MLflow's "View run ... at: http://user:password@..." lines and Hydra's `--cfg job`; log
handlers, Hydra's log file and its `.hydra/` copies of the config; warnings, tracebacks of any
thread), so no failure anywhere prints a password.

A password may hold any character but white space, `/`, `@`, `:`, `#`, `?` and %-escapes
included: everything from `scheme://user:` to the LAST `@` of the same run of non-space
characters is the password (a path holding an `@` after a port loses its port in the redacted
text: more is hidden, never less).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import traceback
import warnings
from typing import Any

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):\S*@")
_SECRET_QUERY = re.compile(r"(?P<head>(?:^|[?&;,\s'\"(])(?:password|passwd|pwd|token|secret"
                           r"|access_token|api_key)\s*=\s*)[^&;,#\s'\")]*", re.IGNORECASE)
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|ACCESS_KEY", re.IGNORECASE)


def _env_secrets() -> list[str]:
    """Values of environment variables named like secrets, longest first (8+ characters: a
    shorter value such as `true` would blank out ordinary words). Another thread may change
    the environment meanwhile (MLflow's telemetry thread sets and unsets its session id):
    the names are a snapshot (`list(os.environ)` copies the keys at once) and each value is
    read with `get`, so a name gone since is skipped, never a KeyError."""
    values = set()
    for name in list(os.environ):
        if _SECRET_ENV.search(name):
            value = os.environ.get(name)
            if value is not None and len(value) >= 8:
                values.add(value)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***: `user:password@`,
    password=... settings and the values of secret environment variables. For anything
    logged (params, tags, artifacts) or printed."""
    text = str(text)
    if "@" in text:
        text = _USERINFO.sub(r"\g<head>:***@", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\g<head>***", text)
    for secret in _env_secrets():
        text = text.replace(secret, "***")
    return text


def redacted(obj: Any) -> Any:
    """A copy of a nested dict/list with `redact` applied to every string in it."""
    if isinstance(obj, dict):
        return {k: redacted(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redacted(v) for v in obj]
    return redact(obj) if isinstance(obj, str) else obj


def traceback_text(exc: BaseException) -> str:
    """The traceback of `exc` as Python prints it, redacted."""
    return redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


class _RedactingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class RedactingStream:
    """A text stream (standard output or error) whose `write` redacts; everything else is the
    stream's own (`buffer`, `fileno`, `isatty`, `flush`, ...). Bytes written to `buffer`
    are not redacted: data, such as `ids.predict output=-`'s scores, takes `unwrapped`."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def write(self, text) -> int:
        self.inner.write(redact(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def unwrapped(stream):
    """The stream under a `RedactingStream` (for data written as it is), else `stream`."""
    return stream.inner if isinstance(stream, RedactingStream) else stream


def _wrap_std_streams() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


def _redact_hydra_copies() -> None:
    """Hydra's `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` (written when
    `hydra.output_subdir` is set; ids sets it null) hold the command line's values: redacted."""
    from hydra.core import utils as hydra_utils
    from omegaconf import OmegaConf

    if getattr(hydra_utils._save_config, "redacted", False):
        return

    def _save_config(cfg, filename: str, output_dir) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(str(output_dir / filename), "w", encoding="utf-8") as file:
            file.write(redact(OmegaConf.to_yaml(cfg)))

    _save_config.redacted = True
    hydra_utils._save_config = _save_config


def install() -> None:
    """Redact what standard output and error receive (MLflow's "View run ... at:" lines,
    Hydra's `--cfg job`), what every log handler writes (the console, Hydra's `<job>.log`),
    Hydra's `.hydra/` copies of the config, warnings and the tracebacks Python prints for any
    thread. Safe to call again (after Hydra configures logging, a command calls it)."""
    _wrap_std_streams()
    _redact_hydra_copies()
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not isinstance(handler.formatter, _RedactingFormatter):
            handler.setFormatter(_RedactingFormatter(handler.formatter))
    warnings.showwarning = _show_warning
    sys.excepthook = lambda t, e, tb: sys.stderr.write(traceback_text(e.with_traceback(tb)))
    threading.excepthook = _thread_exception
    sys.unraisablehook = _unraisable


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    stream = file or sys.stderr
    if stream is not None:
        stream.write(redact(warnings.formatwarning(message, category, filename, lineno, line)))


def _thread_exception(args) -> None:
    if args.exc_type is not SystemExit and sys.stderr is not None:
        name = args.thread.name if args.thread else "a thread"
        sys.stderr.write(f"Exception in thread {name}:\n" + traceback_text(args.exc_value))


def _unraisable(unraisable) -> None:
    if sys.stderr is not None and unraisable.exc_value is not None:
        sys.stderr.write(f"Exception ignored in: {unraisable.object!r}\n"
                         + traceback_text(unraisable.exc_value))
