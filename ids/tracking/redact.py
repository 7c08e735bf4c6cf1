"""Passwords out of everything ids logs or prints: URIs with `user:password@`, `password=...`
settings, and the values of secret environment variables (PGPASSWORD, MLFLOW_TRACKING_PASSWORD).

Every command's error line, every param, tag, artifact and model config goes through `redact`;
`install()` puts it in front of what libraries print too (log handlers, Hydra's log file,
warnings, tracebacks of any thread), so no failure anywhere prints a password.
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

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^/\s]*@")
_SECRET_QUERY = re.compile(r"(?P<head>(?:^|[?&;,\s'\"(])(?:password|passwd|pwd|token|secret"
                           r"|access_token|api_key)\s*=\s*)[^&;,#\s'\")]*", re.IGNORECASE)
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|ACCESS_KEY", re.IGNORECASE)


def _env_secrets() -> list[str]:
    """Values of environment variables named like secrets, longest first (8+ characters: a
    shorter value such as `true` would blank out ordinary words)."""
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***: `user:password@`,
    password=... settings and the values of secret environment variables. For anything
    logged (params, tags, artifacts) or printed."""
    text = _USERINFO.sub(r"\g<head>:***@", str(text))
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


def install() -> None:
    """Redact what every log handler writes (the console, Hydra's `<job>.log`), warnings and
    the tracebacks Python prints for any thread. Safe to call again (after Hydra configures
    logging, a command calls it)."""
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
