"""The prepared store: prepared data on disk, keyed by the hash of the data settings, written
once and memory-mapped by every process that needs it.

A sweep's parent process prepares the data; its workers, `ids.promote`, `ids.evaluate` and later
sweeps with the same data settings open the arrays instead of reading, splitting and encoding
the file again, and share their pages. An entry is `<cache_dir>/<key>/`:

- `table.npy` (k, F) float32: each distinct encoded flow once; `hashes.npy` (k,) uint64: its
  feature hash (`ids.data.copies`);
- per split `<split>.ids.npy` (the table row of every flow, in flow order), `.y.npy` (float32
  labels), `.attack.npy` (int16 codes into the categories of `meta.json`), `.rows.npy` (int64
  rows in the file); NF-v3 flows also `.start.npy` (int64 start time in ms), `.src.npy` and
  `.dst.npy` (int32 address codes): what host windows group by (`Split.grouped`);
- `pre.npz` (the preprocessor's arrays), `meta.json` (its settings, the feature names, the
  categories, the data info) and `loads.log` (one line per process that opened it without
  building it: what the tests count);
- `checksums.json`: the size and BLAKE2b digest of every other file, computed while it was
  written (the `.npy` files) and read back once (the small ones) when the entry was built;
  `verified.json`: each file's (size, mtime, ctime, inode, device) when it last matched its
  digest, and that digest.

An entry proves itself before it is used: every file must be listed in `checksums.json` with
its size, and a file whose stat differs from its `verified.json` stamp (it was written,
replaced, touched or copied since) is hashed again; a file that does not match makes the
entry `Changed` (prepared again, never used). Opening an unchanged entry costs a stat per file
(milliseconds at 76M flows); hashing it whole, when every stamp differs (a copied store),
runs at the hash's speed (~0.4-1 GB/s).

Entries are data, not code (no pickle), built in a temporary folder and renamed, so a reader
never sees half an entry; `.npy` files are written with plain file writes, so building one
does not hold it in memory. The key covers every data setting but the window and the training
subset, the file's path, size and modification time (a rewritten file is prepared again) and
the source of the modules that prepare data. `make clean` empties it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ids.data import encoding, encoding_state
from ids.data.errors import DataError
from ids.data.flows import SPLITS
from ids.data.splits import Prepared, Split

FORMAT = 3  # 3: checksums.json
CHECKSUMS, VERIFIED, LOADS = "checksums.json", "verified.json", "loads.log"
FILES = ("meta.json", "pre.npz", "table.npy", "hashes.npy",
         *(f"{split}.{field}.npy" for split in SPLITS for field in ("ids", "y", "attack", "rows")))
CONTEXT = ("start", "src", "dst")  # NF-v3 only: `<split>.start.npy` (int64 ms), .src/.dst (int32)
_DIGESTS: dict[str, dict[str, list]] = {}  # folder -> {file: [bytes, digest]} of its writers
HASHING = {"seconds": 0.0, "bytes": 0}  # time spent hashing in this process (the bench's figure)
# The code that turns settings into prepared data: an entry made by other code is not reused.
_CODE = ("prepare.py", "splits.py", "windows.py", "flows.py", "encoding.py", "encoding_state.py",
         "synthetic.py", "synthetic_v2.py", "synthetic_v3.py",
         "copies.py", "cache.py", "reader.py", "ingest.py", "errors.py", "gaps.py")


def key(cache_key: str) -> str:
    """Folder name of an entry: the hash of `ids.data.prepare._cache_key` (settings + file identity)
    and of the source of the modules that prepare data."""
    code = hashlib.sha1()
    for name in _CODE:
        code.update((Path(__file__).parent / name).read_bytes())
    return hashlib.sha1(f"{FORMAT}|{code.hexdigest()}|{cache_key}".encode()).hexdigest()[:20]


class Changed(DataError):
    """An entry whose files do not match their checksums: changed after it was written."""


def load(folder: Path, in_memory: bool = False, record: bool = True,
         verify: bool = True) -> Prepared | None:
    """The entry in `folder` (memory-mapped; read into memory with `in_memory`), or None when
    it is absent or unreadable (then it is rebuilt); `Changed` when its files do not match
    their checksums (`verify`: always, but for a temporary entry its own process just wrote).
    `record`: a line in `loads.log` (not for the process that just built the entry)."""
    folder = Path(folder)
    try:
        if verify:
            check(folder)
        else:
            _DIGESTS.pop(str(folder), None)
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            return None
        with np.load(folder / "pre.npz", allow_pickle=False) as z:
            pre = encoding_state.from_state(meta["preprocessor"], {k: z[k] for k in z.files})

        def array(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode=None if in_memory else "r",
                           allow_pickle=False)

        table, hashes = array("table"), array("hashes")
        splits = {name: Split.stored(table, array(f"{name}.ids"), array(f"{name}.y"),
                                     array(f"{name}.attack"), meta["categories"],
                                     array(f"{name}.rows"), hashes) for name in SPLITS}
        context = {name: {k: array(f"{name}.{k}") for k in CONTEXT
                          if (folder / f"{name}.{k}.npy").exists()} for name in SPLITS}
        context = {name: c for name, c in context.items() if c}
    except Changed:
        raise
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if in_memory:  # plain arrays, as a whole-file preparation always gave
        splits = {n: Split(s.X, s.y, s.attack, s.rows, s.hashes) for n, s in splits.items()}
    elif record:
        _log_load(folder / LOADS)
    return Prepared(preprocessor=pre, feature_names=list(meta["feature_names"]),
                    info=meta["info"], context=context, **splits)


def _log_load(path: Path) -> None:
    """A line in `loads.log`, never through a link or into a FIFO (skipped then)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK, 0o666)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def build(folder: Path, make: Callable[[Path], None]) -> None:
    """`make(tmp)` writes an entry into a temporary folder beside `folder`, which is then
    renamed to `folder`; a concurrent builder of the same entry simply loses."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        make(tmp)
        seal(tmp)
        os.replace(tmp, folder)
    except OSError:  # another process renamed its copy first: keep theirs
        if not (folder / "meta.json").exists():
            raise
    finally:
        _DIGESTS.pop(str(tmp), None)
        shutil.rmtree(tmp, ignore_errors=True)


def seal(folder: Path) -> None:
    """`checksums.json` for every file of the entry in `folder` (the digests its writers
    computed; the other files are read once), and `verified.json` for their stats now."""
    folder = Path(folder)
    known = _DIGESTS.get(str(folder), {})
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name not in (CHECKSUMS, VERIFIED, LOADS):
            size, digest = known.get(path.name, (None, None))
            if size != path.stat().st_size:
                size, digest = path.stat().st_size, _digest_file(path)
            files[path.name] = [size, digest]
    (folder / CHECKSUMS).write_text(json.dumps({"hash": HASH, "files": files},
                                                separators=(",", ":")))  # every byte counts
    _stamp_all(folder, files)


def check(folder: Path) -> None:
    """Nothing when every file of the entry matches `checksums.json`; `Changed` naming the
    first that does not; OSError or ValueError when there is no entry to check (absent, or
    made by older code). Files whose stat still equals their `verified.json` stamp are not
    read again."""
    folder = Path(folder)
    manifest = json.loads(_regular(folder / CHECKSUMS).read_text())
    files = manifest["files"]
    if manifest.get("hash") != HASH:
        raise ValueError(f"checksums by {manifest.get('hash')!r}")
    unlisted = [name for name in FILES if name not in files]
    if unlisted:
        raise Changed(f"the prepared data in {folder} has no checksum for {unlisted[0]}")
    try:
        stamps = json.loads(_regular(folder / VERIFIED).read_text())
    except (OSError, ValueError):
        stamps = {}
    again = []
    for name, (size, digest) in files.items():
        try:
            st = os.lstat(folder / name)
        except FileNotFoundError:
            raise Changed(f"the prepared data in {folder} lacks {name}") from None
        if not stat.S_ISREG(st.st_mode):
            raise Changed(f"{folder / name} is not a regular file (an entry holds only files "
                          "ids wrote)")
        if st.st_size != size:
            raise Changed(f"{folder / name} has {st.st_size:,} bytes, not the {size:,} it was "
                          "written with")
        if stamps.get(name) != _stamp(st, digest):
            again.append(name)
    for name in again:
        if _digest_file(folder / name) != files[name][1]:
            raise Changed(f"{folder / name} does not match its checksum: it was changed after "
                          "it was written")
    if again:
        _stamp_all(folder, files)


HASH = "blake2b-128"


def _regular(path: Path) -> Path:
    """`path` if it is a regular file (never a FIFO that would block a read, nor a link);
    FileNotFoundError or Changed otherwise."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise Changed(f"{path} is not a regular file (an entry holds only files ids wrote)")
    return path


def _hasher():
    return hashlib.blake2b(digest_size=16)


def _digest_file(path: Path, chunk: int = 1 << 24) -> str:
    h = _hasher()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            started = time.perf_counter()
            h.update(block)
            _hashed(started, len(block))
    return h.hexdigest()


def _hashed(started: float, n: int) -> None:
    HASHING["seconds"] += time.perf_counter() - started
    HASHING["bytes"] += n


def _stamp(st: os.stat_result, digest: str) -> list:
    """What changes whenever a file's content can have: its size, mtime and ctime (a write
    or `touch` moves ctime, which nothing but the clock can set back), inode and device; and
    the digest it was checked against (an edited checksums.json is checked again)."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, digest]


def _stamp_all(folder: Path, files: dict) -> None:
    """`verified.json`: the stamps of `files` now; skipped when the folder is read-only (then
    every open hashes the entry again)."""
    try:
        stamps = {name: _stamp(os.stat(folder / name), digest)
                  for name, (_, digest) in files.items()}
        tmp = folder / f".{VERIFIED}.{os.getpid()}"
        tmp.write_text(json.dumps(stamps))
        os.replace(tmp, folder / VERIFIED)
    except OSError:
        return
    _past_the_tick(max(stamp[2] for stamp in stamps.values()))


def _past_the_tick(ctime_ns: int) -> None:
    """Return once the clock has left the tick of `ctime_ns`: file times come from a coarse
    clock (a few ms; a second on some file systems), and a file changed within the tick of a
    stamp would keep its ctime (as git's "racily clean" index entries). Waits ~20 ms at most
    where times have nanoseconds, up to a second where they are whole seconds."""
    tick = 1_000_000_000 if ctime_ns % 1_000_000_000 == 0 else 20_000_000
    wait = (ctime_ns + tick - time.time_ns()) / 1e9
    if wait > 0:
        time.sleep(min(wait, 1.1))


def write_meta(folder: Path, pre: encoding.Preprocessor, feature_names: list[str], info: dict,
               categories: list[str]) -> None:
    pre_meta, pre_arrays = encoding_state.state(pre)
    np.savez(folder / "pre.npz", **pre_arrays)
    meta = {"format": FORMAT, "preprocessor": pre_meta, "feature_names": feature_names,
            "categories": categories, "info": info, "prepared_by": os.getpid()}
    (folder / "meta.json").write_text(json.dumps(meta, default=_jsonable))


class NpyWriter:
    """An `.npy` file of known shape written in chunks of rows (file writes, no memory map),
    its digest computed on the way (`seal` lists it)."""

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]) -> None:
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.hash, self.bytes = _hasher(), 0
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                     "fortran_order": False, "shape": tuple(int(s) for s in shape)})
        self._put(header.getvalue())

    def write(self, rows: np.ndarray) -> None:
        self._put(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())

    def _put(self, data: bytes) -> None:
        self.fh.write(data)
        started = time.perf_counter()
        self.hash.update(data)
        _hashed(started, len(data))
        self.bytes += len(data)

    def close(self) -> None:
        self.fh.close()
        _DIGESTS.setdefault(str(self.path.parent), {})[self.path.name] = [
            self.bytes, self.hash.hexdigest()]


def write_array(path: Path, a: np.ndarray, dtype=None, chunk: int = 1 << 22) -> None:
    """`a` (possibly memory-mapped) as an `.npy` file, `chunk` rows at a time."""
    out = NpyWriter(path, dtype or a.dtype, a.shape)
    try:
        for lo in range(0, len(a), chunk):
            out.write(a[lo: lo + chunk])
    finally:
        out.close()


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
