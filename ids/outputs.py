"""Files a command writes for its user: regular files only, whole or not at all, one writer at
a time, never over what the command reads or what a store has recorded.

Every writer (`ids.predict` files and streams, the bench's `--json`, a sweep's exports) goes
through `check` and `replacing`: the path must name a regular file or nothing (a FIFO, a device,
a socket, a folder or a symbolic link is refused by name, so `output=/dev/null` never turns
into a regular file), in an existing folder, not one of the command's inputs (by any path: a
symbolic or hard link is the same file), not inside a folder it must leave alone (the prepared
store, a model folder it reads), and not an existing file unless `overwrite`.

The content goes to `<path>.partial`, is flushed to disk and renamed over the path only when
complete. The partial file is the writer's claim on the output: it appears under its name
already locked (`flock`), so a second command writing the same output fails at once, in one
line, before it writes anything; a partial file nobody holds is left where it is (a killed
run's, or someone's file: the message says to remove it), never removed by another command.
An error, Ctrl-C or SIGTERM removes the command's own partial file and leaves whatever was at
the path untouched. OS errors (a full disk, a read-only folder, no permission) become one-line
`OutputError`s naming the path and the fix.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import io
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from ids.config import ConfigError

PARTIAL = ".partial"

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder",
          stat.S_IFLNK: "a symbolic link"}
_HINTS = {errno.ENOSPC: "the disk is full: free some space or write to another disk",
          errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
          errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
          errno.EACCES: "no permission: choose a folder you can write to",
          errno.EPERM: "no permission: choose a folder you can write to",
          errno.EPIPE: "the reader closed the pipe",
          errno.EBADF: "the stream is closed"}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutputError(ConfigError):
    """An output that may not or could not be written; the message names the path and the fix."""


def os_problem(exc: OSError) -> str:
    """'No space left on device (ENOSPC): the disk is full: ...': an OSError in one line."""
    name = errno.errorcode.get(exc.errno or 0, "")
    what = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(exc.errno or 0)
    return f"{what}{f' ({name})' if name else ''}{f': {hint}' if hint else ''}"


def special(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file ('a FIFO (named pipe)', ...)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable ({os_problem(exc)})"
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def partial(path: str | Path) -> Path:
    """Where the content of `path` is written until it is complete."""
    out = Path(str(path)).expanduser()
    return out.with_name(out.name + PARTIAL)


def check(path: str | Path, *, overwrite: bool = False, key: str = "output",
          inputs: tuple[str | Path, ...] = (), keep_out: tuple[tuple[str | Path, str], ...] = ()
          ) -> Path:
    """`path` if a command may write it: a regular file or nothing, in an existing folder
    that can be written, neither one of `inputs` nor their partial file, outside every folder
    of `keep_out` ((folder, what it is) pairs), not existing unless `overwrite`, and no
    partial file of it there (another command writing it, or left by a killed one)."""
    out = _rules(path, overwrite, key, inputs, keep_out)
    if os.path.lexists(partial(out)):
        _refuse_taken(partial(out), key, path)
    return out


@contextmanager
def replacing(path: str | Path, *, overwrite: bool = False, key: str = "output",
              inputs: tuple[str | Path, ...] = (),
              keep_out: tuple[tuple[str | Path, str], ...] = (), wait: float = 0.0,
              reclaim: bool = False) -> Iterator[IO]:
    """A text file on `<path>.partial` that becomes `path` when the block ends without an
    error (gzip-compressed when the name ends in .gz); otherwise nothing changes. `wait`:
    seconds to wait for another command writing the same path (0: fail at once); `reclaim`:
    remove a partial file nobody writes (only for files a command owns, such as a sweep's
    exports: a user's `output=` is never reclaimed)."""
    out = _rules(path, overwrite, key, inputs, keep_out)
    tmp = partial(out)
    fd = None
    try:
        fd = _claim(tmp, key, path, wait, reclaim)
        with _open(fd, out.name.lower().endswith(".gz")) as fh:
            yield fh
        _publish(tmp, out, overwrite, key, path)
    except OSError as exc:
        if exc.filename is not None and not _ours(str(exc.filename), tmp, out):
            raise  # another file's problem (cli.fail names it)
        raise OutputError(f"{key}={path} could not be written: {os_problem(exc)}; nothing was "
                          "replaced") from exc
    finally:
        if fd is not None:
            _release(fd, tmp)


def write_text(path: str | Path, text: str, *, overwrite: bool = True, key: str = "output",
               reclaim: bool = False) -> Path:
    """`text` as the whole content of `path`, through `replacing`, waiting up to 30 s for
    another process writing it (a sweep's exports are rewritten by every invocation);
    `reclaim`: for files the command owns (those exports), a killed run's partial file."""
    with replacing(path, overwrite=overwrite, key=key, wait=30.0, reclaim=reclaim) as fh:
        fh.write(text)
    return Path(str(path)).expanduser()


def _rules(path, overwrite: bool, key: str, inputs, keep_out) -> Path:
    """`check` without the partial file: what the path itself must be."""
    out = Path(str(path)).expanduser()
    kind = special(out)
    if kind:
        raise OutputError(f"{key}={path} is {kind}; ids writes regular files only: name a file")
    if out.name.endswith(PARTIAL):
        raise OutputError(f"{key}={path}: names ending in {PARTIAL} are the files ids writes "
                          "before they are complete; choose another name")
    tmp = partial(out)
    for inp in inputs:
        if str(inp) == "-":
            continue
        inp_path = Path(str(inp)).expanduser()
        if _same(out, inp_path):
            raise OutputError(f"{key}={path} would overwrite the input; choose another file")
        if _same(tmp, inp_path):
            raise OutputError(f"{key}={path} is written as {tmp.name} first, and that is the "
                              f"input ({inp}); choose another output file")
    for folder, what in keep_out:
        if folder and _inside(out, Path(str(folder)).expanduser()):
            raise OutputError(f"{key}={path} is inside {what} ({folder}), which ids keeps as it "
                              "wrote it; choose a file elsewhere")
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"{key}={path}: folder {folder} does not exist; create it or choose "
                          "another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only(folder) else errno.EACCES
        raise OutputError(f"{key}={path}: folder {folder} cannot be written "
                          f"({os_problem(OSError(code, os.strerror(code)))})")
    if out.exists() and not overwrite:
        raise OutputError(f"{key}={path} exists; choose another file, or pass overwrite=true to "
                          "replace it")
    kind = special(tmp)
    if kind:
        raise OutputError(f"{key}={path}: {tmp.name} is {kind}; remove it first")
    return out


class _Busy(OutputError):
    """Another command is writing the same output right now."""


def _refuse_taken(tmp: Path, key: str, path) -> None:
    """OutputError for an existing partial file: busy when a command holds its lock, else a
    file nobody writes (left by a killed run, or not ids' at all): the user decides."""
    if _locked(tmp):
        raise _Busy(f"{key}={path} is being written by another command right now ({tmp.name} "
                    "is locked); wait for it to finish, or choose another file")
    if os.path.lexists(tmp):
        raise OutputError(f"{key}={path}: {tmp} exists and no command is writing it (left by "
                          "a killed run?); remove it, or choose another file")


def _peek(tmp: Path) -> int | None:
    """A read-only descriptor of the file at `tmp` (never opening a FIFO or following a
    link), or None when it is gone."""
    try:
        return os.open(tmp, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except OSError:
        return None


def _locked(tmp: Path) -> bool:
    """Whether a process holds the lock of the file at `tmp` (False when it is gone)."""
    fd = _peek(tmp)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _reclaim(tmp: Path) -> bool:
    """Remove the partial file at `tmp` if nobody writes it and it is a plain file with no
    other name (a killed run's); True when it was removed."""
    fd = _peek(tmp)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        mine, there = os.fstat(fd), os.lstat(tmp)
        if stat.S_ISREG(mine.st_mode) and mine.st_nlink == 1 and \
                (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            os.unlink(tmp)
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


def _claim(tmp: Path, key: str, path, wait: float, reclaim: bool) -> int:
    """The descriptor of a new partial file at `tmp`, locked for as long as it is open;
    OutputError when `tmp` is taken (waiting up to `wait` s for a command writing it)."""
    deadline = time.monotonic() + wait
    while True:
        fd = _new_locked(tmp)
        if fd is not None:
            return fd
        if reclaim and _reclaim(tmp):
            continue
        try:
            _refuse_taken(tmp, key, path)
        except _Busy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        # else: gone meanwhile (its writer finished): try again


def _new_locked(tmp: Path) -> int | None:
    """A new file at `tmp`, locked before its name appears: it is created under a unique
    name, locked, then hard-linked to `tmp` (which fails if `tmp` exists), so whoever finds
    `tmp` finds it locked while its writer lives. None when `tmp` exists."""
    scratch = tmp.with_name(f".{tmp.name}.{os.getpid()}.{threading.get_ident()}")
    fd = _create(scratch)
    try:
        _lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.link(scratch, tmp)
        return fd
    except FileExistsError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
    except BaseException:
        os.close(fd)
        raise
    finally:
        with suppress(FileNotFoundError):
            os.unlink(scratch)
    try:  # a file system without hard links: the name appears a moment before its lock
        fd = _create(tmp)
    except FileExistsError:
        return None
    _lock(fd, fcntl.LOCK_EX)
    return fd


def _lock(fd: int, how: int) -> None:
    """`flock`, where the file system has it (without, O_EXCL alone keeps one writer; a
    second one is then told the partial file exists rather than that it is busy)."""
    try:
        fcntl.flock(fd, how)
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise


def _create(path: Path) -> int:
    """A new file at `path` opened for writing (never an existing one, never through a link)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)


def _release(fd: int, tmp: Path) -> None:
    """Remove `tmp` if it is still this command's partial file (same inode), then unlock."""
    try:
        mine = os.fstat(fd)
        there = os.lstat(tmp)
        if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            os.unlink(tmp)
    except FileNotFoundError:
        pass  # renamed into place, or removed
    finally:
        os.close(fd)


@contextmanager
def _open(fd: int, gz: bool) -> Iterator[IO]:
    """UTF-8 text on the claimed partial file `fd`, flushed to disk on success; the layers are
    undone by hand so that none flushes into a closed file after an error. `fd` stays open
    (its lock is held until the file is published or removed)."""
    raw = os.fdopen(os.dup(fd), "wb")
    layers: list = [raw]
    try:
        if gz:
            layers.append(gzip.GzipFile(fileobj=raw, mode="wb"))
        layers.append(io.TextIOWrapper(layers[-1], encoding="utf-8", newline=""))
        yield layers[-1]
        layers[-1].detach()  # flushes into the gzip or raw layer, which stays open
        layers.pop()
        if gz:
            layers[-1].close()  # the gzip trailer; the raw file stays open
            layers.pop()
        raw.flush()
        os.fsync(raw.fileno())  # a full disk shows here at the latest, before the rename
    finally:
        for layer in reversed(layers[1:]):  # after an error: drop what is buffered, quietly
            with suppress(Exception):
                layer.detach() if isinstance(layer, io.TextIOWrapper) else layer.close()
        with suppress(OSError):
            raw.close()


def _publish(tmp: Path, out: Path, overwrite: bool, key: str, path) -> None:
    """Rename the complete file into place; without `overwrite` a file that appeared meanwhile
    is not replaced (a hard link fails if the name exists)."""
    kind = special(out)
    if kind:
        raise OutputError(f"{key}={path} became {kind} while it was written; nothing replaced")
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError as exc:
        raise OutputError(f"{key}={path} appeared while it was written; it was left as it is. "
                          "Choose another file, or pass overwrite=true") from exc
    except OSError:  # a file system without hard links: check, then rename
        if out.exists():
            raise OutputError(f"{key}={path} appeared while it was written; it was left as it "
                              "is") from None
        os.replace(tmp, out)


def _ours(name: str, tmp: Path, out: Path) -> bool:
    """Whether an OS error's file is the output, its partial file or the partial's scratch."""
    return name in (str(tmp), str(out)) or (Path(name).parent == tmp.parent
                                            and Path(name).name.startswith(f".{tmp.name}."))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` (resolved) lies in `folder` (resolved), or is that folder."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
