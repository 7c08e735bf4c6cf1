"""Files a command writes for its user: regular files only, whole or not at all.

Every writer (`ids.predict` files and streams, the bench's `--json`, a sweep's exports) goes
through `check` and `replacing`: the path must name a regular file or nothing (a FIFO, a device,
a socket, a folder or a symbolic link is refused by name, so `output=/dev/null` never turns
into a regular file), in an existing folder, and not an existing file unless `overwrite`.
The content goes to `<path>.partial`, is flushed to disk and renamed over the path only when
complete; an error, Ctrl-C or SIGTERM removes the partial file and leaves whatever was there
untouched. OS errors (a full disk, a read-only folder, no permission) become one-line
`OutputError`s naming the path and the fix.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
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


def check(path: str | Path, *, overwrite: bool = False, key: str = "output",
          inputs: tuple[str | Path, ...] = ()) -> Path:
    """`path` if a command may write it: a regular file or nothing, in an existing folder
    that can be written, not one of `inputs`, and not existing unless `overwrite`."""
    out = Path(str(path)).expanduser()
    kind = special(out)
    if kind:
        raise OutputError(f"{key}={path} is {kind}; ids writes regular files only: name a file")
    for inp in inputs:
        if str(inp) != "-" and _same(out, Path(str(inp)).expanduser()):
            raise OutputError(f"{key}={path} would overwrite the input; choose another file")
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
    kind = special(out.with_name(out.name + PARTIAL))
    if kind:
        raise OutputError(f"{key}={path}: {out.name}{PARTIAL} is {kind}; remove it first")
    return out


@contextmanager
def replacing(path: str | Path, *, overwrite: bool = False, key: str = "output",
              inputs: tuple[str | Path, ...] = ()) -> Iterator[IO]:
    """A text file on `<path>.partial` that becomes `path` when the block ends without an
    error (gzip-compressed when the name ends in .gz); otherwise nothing changes."""
    out = check(path, overwrite=overwrite, key=key, inputs=inputs)
    tmp = out.with_name(out.name + PARTIAL)
    try:
        with _open(tmp, out.name.lower().endswith(".gz")) as fh:
            yield fh
        _publish(tmp, out, overwrite, key, path)
    except OSError as exc:
        if exc.filename not in (None, str(tmp), str(out)):
            raise  # another file's problem (cli.fail names it)
        raise OutputError(f"{key}={path} could not be written: {os_problem(exc)}; nothing was "
                          "replaced") from exc
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str, *, overwrite: bool = True, key: str = "output") -> Path:
    """`text` as the whole content of `path`, through `replacing`."""
    with replacing(path, overwrite=overwrite, key=key) as fh:
        fh.write(text)
    return Path(str(path)).expanduser()


@contextmanager
def _open(tmp: Path, gz: bool) -> Iterator[IO]:
    """UTF-8 text on a new `tmp`, flushed to disk on success; the layers are undone by hand so
    that none flushes into a closed file after an error."""
    if os.path.lexists(tmp):  # a regular file left by a killed run (check refused anything else)
        os.unlink(tmp)
    raw = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                            | getattr(os, "O_NOFOLLOW", 0), 0o666), "wb")
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


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
