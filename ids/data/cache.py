"""The prepared store: prepared data on disk, keyed by the hash of the data settings, written
once and memory-mapped by every process that needs it.

A sweep's parent process prepares the data; its workers, `ids.promote`, `ids.evaluate` and later
sweeps with the same data settings open the arrays instead of reading, splitting and encoding
the file again, and share their pages. An entry is `<cache_dir>/<key>/`:

- `table.npy` (k, F) float32: each distinct encoded flow once; `hashes.npy` (k,) uint64: its
  feature hash (`ids.data.copies`);
- per split `<split>.ids.npy` (the table row of every flow, in flow order), `.y.npy` (float32
  labels), `.attack.npy` (int16 codes into the categories of `meta.json`), `.rows.npy` (int64
  rows in the file);
- `pre.npz` (the preprocessor's arrays), `meta.json` (its settings, the feature names, the
  categories, the data info) and `loads.log` (one line per process that opened it without
  building it: what the tests count).

Entries are data, not code (no pickle), built in a temporary folder and renamed, so a reader
never sees half an entry; `.npy` files are written with plain file writes, so building one
does not hold it in memory. The key covers every data setting but the window and the training
subset, the file's path, size and modification time (a rewritten file is prepared again) and
the source of the modules that prepare data. `make clean` empties it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ids.data import encoding
from ids.data.flows import SPLITS
from ids.data.splits import Prepared, Split

FORMAT = 2
# The code that turns settings into prepared data: an entry made by other code is not reused.
_CODE = ("prepare.py", "splits.py", "windows.py", "flows.py", "encoding.py", "synthetic.py",
         "copies.py", "cache.py", "reader.py", "ingest.py", "errors.py")


def key(cache_key: str) -> str:
    """Folder name of an entry: the hash of `ids.data.prepare._cache_key` (settings + file identity)
    and of the source of the modules that prepare data."""
    code = hashlib.sha1()
    for name in _CODE:
        code.update((Path(__file__).parent / name).read_bytes())
    return hashlib.sha1(f"{FORMAT}|{code.hexdigest()}|{cache_key}".encode()).hexdigest()[:20]


def load(folder: Path, in_memory: bool = False, record: bool = True) -> Prepared | None:
    """The entry in `folder` (memory-mapped; read into memory with `in_memory`), or None when
    it is absent or unreadable (then it is rebuilt). `record`: a line in `loads.log` (not for
    the process that just built the entry)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            return None
        with np.load(folder / "pre.npz", allow_pickle=False) as z:
            pre = encoding.from_state(meta["preprocessor"], {k: z[k] for k in z.files})

        def array(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode=None if in_memory else "r",
                           allow_pickle=False)

        table, hashes = array("table"), array("hashes")
        splits = {name: Split.stored(table, array(f"{name}.ids"), array(f"{name}.y"),
                                     array(f"{name}.attack"), meta["categories"],
                                     array(f"{name}.rows"), hashes) for name in SPLITS}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if in_memory:  # plain arrays, as a whole-file preparation always gave
        splits = {n: Split(s.X, s.y, s.attack, s.rows, s.hashes) for n, s in splits.items()}
    elif record:
        with open(folder / "loads.log", "a") as log:
            log.write(f"{os.getpid()}\n")
    return Prepared(preprocessor=pre, feature_names=list(meta["feature_names"]),
                    info=meta["info"], **splits)


def build(folder: Path, make: Callable[[Path], None]) -> None:
    """`make(tmp)` writes an entry into a temporary folder beside `folder`, which is then
    renamed to `folder`; a concurrent builder of the same entry simply loses."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        make(tmp)
        os.replace(tmp, folder)
    except OSError:  # another process renamed its copy first: keep theirs
        if not (folder / "meta.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_meta(folder: Path, pre: encoding.Preprocessor, feature_names: list[str], info: dict,
               categories: list[str]) -> None:
    pre_meta, pre_arrays = encoding.state(pre)
    np.savez(folder / "pre.npz", **pre_arrays)
    meta = {"format": FORMAT, "preprocessor": pre_meta, "feature_names": feature_names,
            "categories": categories, "info": info, "prepared_by": os.getpid()}
    (folder / "meta.json").write_text(json.dumps(meta, default=_jsonable))


class NpyWriter:
    """An `.npy` file of known shape written in chunks of rows (file writes, no memory map)."""

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]) -> None:
        self.dtype, self.fh = np.dtype(dtype), open(path, "wb")  # noqa: SIM115 - closed in close()
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                      "fortran_order": False, "shape": tuple(int(s) for s in shape)})

    def write(self, rows: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())

    def close(self) -> None:
        self.fh.close()


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
