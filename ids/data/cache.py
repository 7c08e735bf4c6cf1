"""Prepared data on disk, keyed by the hash of the data settings, so it is prepared once.

A sweep's parent process prepares the data, its worker processes (and later commands with the
same data settings) load the arrays instead of reading, splitting and encoding the file again.
An entry is `<cache_dir>/<key>/`: `arrays.npz` (every split's flows, labels, categories, rows
and hashes; the preprocessor's arrays), `meta.json` (the preprocessor's settings, feature names,
the data info) and `loads.log` (one line per process that loaded it: what the tests count).
Entries are data, not code (no pickle), written to a temporary folder and renamed, so a reader
never sees half an entry. The key covers every data setting but the window, and the file's
path, size and modification time: a rewritten file is prepared again. `make clean` empties it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ids.data import encoding
from ids.data.flows import SPLITS
from ids.data.splits import Prepared, Split

FORMAT = 1
# The code that turns settings into prepared data: an entry made by other code is not reused.
_CODE = ("prepare.py", "splits.py", "windows.py", "flows.py", "encoding.py", "synthetic.py",
         "copies.py", "cache.py")


def key(cache_key: str) -> str:
    """Folder name of an entry: the hash of `ids.data.prepare._cache_key` (settings + file identity)
    and of the source of the modules that prepare data."""
    code = hashlib.sha1()
    for name in _CODE:
        code.update((Path(__file__).parent / name).read_bytes())
    return hashlib.sha1(f"{FORMAT}|{code.hexdigest()}|{cache_key}".encode()).hexdigest()[:20]


def load(folder: Path) -> Prepared | None:
    """The entry in `folder`, or None when it is absent or unreadable (then it is rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if meta.get("format") != FORMAT:
            return None
        pre = encoding.from_state(
            meta["preprocessor"], {k[4:]: v for k, v in arrays.items() if k.startswith("pre.")})
    except (OSError, ValueError, KeyError):
        return None
    splits = {}
    for name in SPLITS:
        hashes = arrays.get(f"{name}.hashes")
        splits[name] = Split(arrays[f"{name}.X"], arrays[f"{name}.y"],
                             arrays[f"{name}.attack"].astype(object), arrays[f"{name}.rows"],
                             hashes)
    with open(folder / "loads.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    return Prepared(preprocessor=pre, feature_names=list(meta["feature_names"]),
                    info=meta["info"], **splits)


def save(prepared: Prepared, folder: Path) -> None:
    """Write the entry atomically; a concurrent writer of the same entry simply loses."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    pre_meta, pre_arrays = encoding.state(prepared.preprocessor)
    arrays = {f"pre.{k}": v for k, v in pre_arrays.items()}
    for name in SPLITS:
        s = prepared.split(name)
        arrays.update({f"{name}.X": s.X, f"{name}.y": s.y, f"{name}.rows": s.rows,
                       f"{name}.attack": np.asarray(s.attack, dtype=str)})
        if s.hashes is not None:
            arrays[f"{name}.hashes"] = s.hashes
    meta = {"format": FORMAT, "preprocessor": pre_meta, "feature_names": prepared.feature_names,
            "info": prepared.info, "prepared_by": os.getpid()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        np.savez(tmp / "arrays.npz", **arrays)
        (tmp / "meta.json").write_text(json.dumps(meta, default=_jsonable))
        os.replace(tmp, folder)
    except OSError:  # another process renamed its copy first: keep theirs
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
