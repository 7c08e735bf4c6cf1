"""The databases behind the MLflow store and the Optuna storage: reachable, and created once.

- `check_reachable`: a database URL (postgresql://, mysql://) or a tracking server (http://,
  https://) that cannot be reached fails within seconds, with one line (MLflow itself retries
  for minutes, then prints a traceback); a SQLite store whose file, journals or lock file is
  a FIFO, a device or a folder fails at once (opening a FIFO blocked the command forever).
- `first_use`: any number of workers started together on a new store all get it. On SQLite they
  create its tables one after the other (an exclusive lock on `<db>.lock` beside the file);
  elsewhere (PostgreSQL) the losers of the race to create tables and types retry.
"""

from __future__ import annotations

import errno
import fcntl
import http.client
import os
import ssl
import stat
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ids.config import ConfigError
from ids.tracking.redact import redact

T = TypeVar("T")
ATTEMPTS = 6
PROBE_SECONDS = 5.0  # a tracking server answers its /health at once; an address that drops
# packets (a firewall, a host that is down) is given this long
SQLITE_FILES = ("", "-journal", "-wal", "-shm", ".lock")  # a database, its journals, ids' lock
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}
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
    """StoreError naming `key` when the database or tracking server of `uri` cannot be
    reached, or when a file of its SQLite store is not a regular file (URLs of other kinds
    are left to their clients)."""
    if uri.startswith(("http://", "https://")):
        return _probe_server(uri, key)
    if (db := sqlite_path(uri)) is not None:
        return check_sqlite_files(db, uri, key)
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


def check_sqlite_files(db: Path, uri: str, key: str) -> None:
    """StoreError when the SQLite file `db`, a journal of it or its lock file exists and is
    not a regular file: SQLite and `first_use_lock` would block on a FIFO forever."""
    for end in SQLITE_FILES:
        path = db.with_name(db.name + end)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"{key}={redact(uri)}: {path} cannot be read ({exc.strerror or exc})"
                             ) from exc
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise StoreError(f"{key}={redact(uri)}: {path} is {kind}; a SQLite store, its "
                             "journals and its lock file must be regular files: remove it or "
                             "choose another store")


def _probe_server(uri: str, key: str) -> None:
    """One request to the tracking server's /health, within PROBE_SECONDS: any HTTP answer
    (even 401 or 404) is a server; no answer is a StoreError in one line. MLflow would retry
    each request for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, _TIMEOUT: 7 tries of up to
    120 s). Skipped when a proxy serves the URL (the proxy, not this host, reaches it)."""
    parts = urllib.parse.urlsplit(uri)
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # its text would quote the "port": a password's first part
        raise StoreError(f"{key}={redact(uri)} is not a valid URL: what follows its host is "
                         "not a port number (in a password, write / # ? @ as %2F %23 %3F %40)"
                         ) from exc
    if not host:
        raise StoreError(f"{key}={redact(uri)} names no host")
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return
    if parts.scheme == "https":  # reachability only: MLflow checks the certificate itself
        conn = http.client.HTTPSConnection(host, port, timeout=PROBE_SECONDS,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=PROBE_SECONDS)
    try:
        conn.request("GET", parts.path.rstrip("/") + "/health")
        conn.getresponse().read(1 << 16)
    except (OSError, http.client.HTTPException) as exc:
        why = (f"no answer within {PROBE_SECONDS:g} s" if isinstance(exc, TimeoutError)
               else f"{type(exc).__name__}: {exc}")
        raise StoreError(f"{key}={redact(uri)} cannot be reached ({redact(why)[:300]}); start "
                         "the tracking server (`make server`) or fix the URL (keep the password "
                         "in MLFLOW_TRACKING_PASSWORD, not in the URL)") from exc
    finally:
        conn.close()


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
    lock = db.with_name(db.name + ".lock")
    # never blocks on a FIFO (O_NONBLOCK: ENXIO without a reader) nor follows a link
    not_a_file = StoreError(f"{lock} is not a regular file (a FIFO, a device or a link?); it is "
                            "the lock file of the SQLite store beside it: remove it")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK
                     | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:  # ENXIO: a FIFO nobody reads; ELOOP: a link
        if exc.errno in (errno.ENXIO, errno.ELOOP):
            raise not_a_file from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_a_file
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
