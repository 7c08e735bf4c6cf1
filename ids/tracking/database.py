"""The databases behind the MLflow store and the Optuna storage: reachable, and created once.

- `check_reachable`: a database URL (postgresql://, mysql://) that cannot be connected to fails
  within seconds, with one line; MLflow itself retries for minutes, then prints a traceback.
- `first_use`: any number of workers started together on a new store all get it. On SQLite they
  create its tables one after the other (an exclusive lock on `<db>.lock` beside the file);
  elsewhere (PostgreSQL) the losers of the race to create tables and types retry.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ids.config import ConfigError
from ids.tracking.redact import redact

T = TypeVar("T")
ATTEMPTS = 6
_RACE = ("already exists", "duplicate key", "database is locked", "no such table",
         "UniqueViolation", "DuplicateTable", "DuplicateObject", "could not serialize")


class StoreError(ConfigError):
    """A store that cannot be reached or written; the message says which and what to do."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working folder), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def check_reachable(uri: str, key: str) -> None:
    """StoreError naming `key` when the database URL `uri` cannot be connected to (URLs of
    other kinds are left to their clients)."""
    if not uri.startswith(("postgresql", "mysql", "mssql")):
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10})
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - every driver has its own errors
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        raise StoreError(f"{key}={redact(uri)} cannot be reached ({type(exc).__name__}: "
                         f"{redact(first)[:300]}); start the database or fix the URL (keep the "
                         "password in PGPASSWORD, not in the URL)") from exc


def first_use(uri: str, open_store: Callable[[], T]) -> T:
    """`open_store()` (which may create the store's tables) such that workers starting together
    on a new store all succeed: under `first_use_lock` for SQLite, retried after a lost race."""
    def attempt() -> T:
        with first_use_lock(sqlite_path(uri)):
            return open_store()
    return retried(attempt)


def retried(call: Callable[[], T], pause: float = 0.3) -> T:
    """`call()`, again (up to ATTEMPTS times, pausing longer each time) while it loses a race
    with another worker (`lost_race`); any other error is raised at once."""
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy, alembic and MLflow errors alike
            if attempt == ATTEMPTS - 1 or not lost_race(exc):
                raise
        time.sleep(pause * (attempt + 1))
    raise AssertionError("not reached")


def lost_race(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is a worker losing the race to create a new store."""
    seen = 0
    while exc is not None and seen < 10:
        if any(r in str(exc) for r in _RACE):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def root_cause(exc: BaseException | None) -> str:
    """'OperationalError: database or disk is full': the deepest explicit cause of `exc` (the
    driver's own error under SQLAlchemy's and MLflow's), type and first line."""
    seen = 0
    while exc is not None and exc.__cause__ is not None and seen < 10:
        exc, seen = exc.__cause__, seen + 1
    exc = getattr(exc, "orig", None) or exc
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {redact(first)[:200]}"


@contextmanager
def first_use_lock(db: Path | None) -> Iterator[None]:
    """An exclusive lock on `<db>.lock` beside a SQLite file (nothing for other stores)."""
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
