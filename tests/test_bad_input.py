"""The bad-input table of docs/guide/bad-input.md, one case per row: real files through the real commands.

Every error case ends with one line on stderr naming the file, the row and the column where
they apply, exit code 2, and no output file (not even a partial one). The cases that are not
errors (a zip with a folder entry, an empty Label column) are scored. docs/guide/bad-input.md holds the same
rows after its `<!-- bad-input table -->` marker; `test_docs_table_matches_the_cases` keeps
them one to one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, patience, run_cli
from ids.data import limits, synthetic
from ids.tools import servers
from world import mlflow_store

MIX = {"Benign": 1.0, "DoS": 3.0}


def _flows(n: int = 300) -> pd.DataFrame:
    return synthetic.generate(n, 11, MIX)


def _csv(tmp: Path, df: pd.DataFrame, name: str = "flows.csv", **kw) -> Path:
    path = tmp / name
    df.to_csv(path, index=False, **kw)
    return path


def _set(df: pd.DataFrame, col: str, row: int, value) -> pd.DataFrame:
    df = df.copy()
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    return df


def _zip(tmp: Path, members: dict[str, str]) -> Path:
    path = tmp / "flows.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), "")
            else:
                zf.writestr(name, text)
    return path


def _ragged(tmp: Path) -> Path:
    path = _csv(tmp, _flows())
    lines = path.read_text().splitlines()
    lines[4] += ",extra"  # data row 3, line 5
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Case:
    make: Callable[[Path], Path | list[str]]  # the input file, or the whole command line
    expect: tuple[str, ...] = ()  # fragments of the one-line error (or of stdout when code 0)
    code: int = 2
    module: str = "ids.predict"
    chunk_size: int = 100  # several chunks: row numbers must still count from the file start
    limits: dict = field(default_factory=dict)  # ids.data.limits lowered for the case


CASES: dict[str, Case] = {
    "missing column": Case(lambda t: _csv(t, _flows().drop(columns=["TCP_FLAGS"])),
                           ("flows.csv", "missing columns ['TCP_FLAGS']")),
    "renamed column": Case(lambda t: _csv(t, _flows().rename(columns={"IN_BYTES": "in_bytes"})),
                           ("flows.csv", "'IN_BYTES'", "'in_bytes'", "renamed?")),
    "text in a numeric column": Case(lambda t: _csv(t, _set(_flows(), "IN_BYTES", 150, "lots")),
                                     ("flows.csv", "'IN_BYTES'", "row 150 ", "line 152", "'lots'")),
    "NaN (empty cell)": Case(lambda t: _csv(t, _set(_flows(), "OUT_PKTS", 242, None)),
                             ("flows.csv", "'OUT_PKTS'", "1 NaN", "row 242 ")),
    "infinity": Case(lambda t: _csv(t, _set(_flows(), "IN_BYTES", 7, "inf")),
                     ("flows.csv", "'IN_BYTES'", "1 infinite", "row 7 ")),
    "empty file (0 bytes)": Case(lambda t: (t / "flows.csv").write_text("") or t / "flows.csv",
                                 ("flows.csv", "is empty")),
    "header only": Case(lambda t: _csv(t, _flows().iloc[:0]), ("flows.csv", "no flows")),
    "ragged rows": Case(_ragged, ("flows.csv", "Expected 14 fields in line 5, saw 15")),
    "wrong delimiter": Case(lambda t: _csv(t, _flows(), sep=";"),
                            ("flows.csv", "';'-separated", "comma-separated")),
    "gzip that is not gzip": Case(
        lambda t: (t / "flows.csv.gz").write_text("not,gzip\n1,2\n") and t / "flows.csv.gz",
        ("flows.csv.gz", "BadGzipFile", "extension match its content")),
    "zip with no CSV": Case(lambda t: _zip(t, {"README.txt": "flows elsewhere"}),
                            ("flows.zip", "holds 0 CSV files")),
    "zip with two CSVs": Case(lambda t: _zip(t, {"a.csv": "x\n1\n", "b.csv": "x\n2\n"}),
                              ("flows.zip", "holds 2 CSV files", "a.csv", "b.csv")),
    "zip with a folder entry": Case(
        lambda t: _zip(t, {"flows/": "", "flows/flows.csv": _flows().to_csv(index=False)}),
        ("scored 300 flows",), code=0),
    "Label outside {0, 1}": Case(lambda t: _csv(t, _set(_flows(), "Label", 210, 2)),
                                 ("flows.csv", "'Label'", "found [2]", "row 210 ")),
    "empty Label column": Case(
        lambda t: _csv(t, _flows().assign(Label=np.nan, Attack=np.nan)),
        ("scored 300 flows",), code=0),
    "negative count": Case(lambda t: _csv(t, _set(_flows(), "IN_BYTES", 120, -5)),
                           ("flows.csv", "'IN_BYTES'", ">= 0", "row 120 ", "-5")),
    "fractional TCP flags": Case(lambda t: _csv(t, _set(_flows(), "TCP_FLAGS", 30, 2.5)),
                                 ("flows.csv", "'TCP_FLAGS'", "whole number", "row 30 ", "2.5")),
    "TCP flags beyond 8 bits": Case(lambda t: _csv(t, _set(_flows(), "TCP_FLAGS", 40, 1e30)),
                                    ("flows.csv", "'TCP_FLAGS'", "(0-255)", "row 40 ")),
    "model URI that does not exist": Case(lambda t: ["model_uri=models:/ids-cnn-bilstm@champion",
                                                     f"tracking.uri={_empty_store(t)}"],
                                          ("models:/ids-cnn-bilstm@champion",
                                           "no registered model 'ids-cnn-bilstm'")),
    "output in a missing folder": Case(lambda t: [f"output={t}/no/such/alerts.csv"],
                                       ("output=", "no/such", "does not exist")),
    "output file exists": Case(lambda t: [f"output={_existing(t)}"],
                               ("alerts.csv exists", "overwrite=true")),
    "window longer than the split": Case(
        lambda t: ["data.n_flows=2000", "data.window=400", f"tracking.uri=sqlite:///{t}/m.db",
                   f"cache_dir={t}/cache"],
        ("data.window=400", "longer than the", "split (300 flows)"), module="ids.run"),
    "NaN model weights": Case(lambda t: [f"model_uri={_nan_model(t)}"],
                              ("weights", "NaN or infinite", "retrain")),
    "repeated column name": Case(
        lambda t: _csv(t, _flows().rename(columns={"OUT_BYTES": "IN_BYTES"})),
        ("flows.csv", "column 'IN_BYTES' appears 2 times", "keep one")),
    "damaged parquet": Case(lambda t: _damaged_parquet(t), ("flows.parquet", "cannot be read as parquet")),
    "output is a FIFO": Case(lambda t: [f"output={_fifo(t)}", "overwrite=true"],
                             ("is a FIFO", "regular files only")),
    "output is a folder": Case(lambda t: [f"output={t}", "overwrite=true"], ("is a folder",)),
    "score memo below 0": Case(lambda t: ["score_memo_mb=-1"],
                                ("score_memo_mb", ">= 0 (0: no memo)", "-1")),
    "password in an unreachable store URL": Case(
        lambda t: ["model_uri=models:/ids-cnn-bilstm@champion", f"tracking.uri={_PG}"],
        ("tracking.uri=postgresql://u:***@127.0.0.1:1/db", "cannot be reached")),
    "password in a Hydra override error": Case(
        lambda t: ["tracking.urx=postgresql://u:S3cr3t@h/db"],
        ("Could not override 'tracking.urx'", "postgresql://u:***@h/db")),
    "model threshold outside [0, 1]": Case(lambda t: [f"model_uri={_edited(t, threshold=-5)}"],
                                           ("'threshold' must be a number in [0, 1]",)),
    "model window too big for memory": Case(lambda t: [f"model_uri={_edited(t, window=50_000)}"],
                                            ("'window' 50000", "GB of memory", "available here")),
    "model setting missing": Case(lambda t: [f"model_uri={_edited(t, pool_size=None)}"],
                                  ("lacks the required settings ['pool_size']",)),
    "model file linked out of its folder": Case(lambda t: [f"model_uri={_linked_out(t)}"],
                                                ("weights.npz is a link out of its folder",)),
    "input named like the output's partial file": Case(
        lambda t: [f"input={_csv(t, _flows(), 'alerts.csv.partial')}"],
        ("is written as alerts.csv.partial first, and that is the input",)),
    "partial file nobody writes": Case(
        lambda t: (t / "alerts.csv.partial").write_text("keep me\n") and [],
        ("alerts.csv.partial exists and no command is writing it", "remove it")),
    "output named like a partial file": Case(lambda t: [f"output={t}/x.csv.partial"],
                                             ("names ending in .partial",)),
    "output inside the prepared store": Case(
        lambda t: [f"output={_store_file(t)}", "overwrite=true", f"cache_dir={t}/cache"],
        ("is inside the prepared store (cache_dir)",)),
    "zip of a 60 MB line of zeros": Case(lambda t: _zeros_zip(t, 60),
                                         ("flows.zip", "a line is longer than 4.0 MiB")),
    "zip bomb": Case(lambda t: _zeros_zip(t, 65),
                     ("flows.csv expands to more than 1000 times", "decompression bomb")),
    "compressed bomb of flows": Case(
        lambda t: _zst(t, _csv(t, _flows()).read_bytes().split(b"\n", 1)[0] + b"\n"
                       + _csv(t, _flows()).read_bytes().split(b"\n")[1] * 40_000 + b"\n"),
        ("flows.csv.zst", "expands to more than 50 times"),
        limits={"RATIO_FLOOR": 1 << 20, "MAX_RATIO": 50}),
    "zip with 10,001 entries": Case(
        lambda t: _zip(t, {f"junk/{i}.txt": "" for i in range(10_001)}),
        ("flows.zip holds 10,001 entries",)),
    "xz that is not xz": Case(lambda t: (t / "flows.csv.xz").write_text("not xz\n" * 50)
                              and t / "flows.csv.xz", ("cannot be read as xz (LZMAError",)),
    "timestamps in a counter": Case(
        lambda t: _csv(t, _flows().assign(IN_BYTES="2024-01-01 00:00:00")),
        ("'IN_BYTES' must be numeric, but it was read as timestamps",)),
    "input is a FIFO": Case(lambda t: [f"input={_fifo(t)}"],
                            ("is a FIFO (named pipe), not a file of flows",)),
    "learning rate not finite": Case(lambda t: ["trainer.lr=inf", *_run_stores(t)],
                                     ("trainer.lr must be a finite number",), module="ids.run"),
    "negative seed": Case(lambda t: ["seed=-1", *_run_stores(t)], ("seed must be in [0,",),
                          module="ids.run"),
    "model too big to train": Case(
        lambda t: ["model.lstm_units=200000", "model.filters=50000", *_run_stores(t)],
        ("model.lstm_units=200000", "GiB of memory (an estimate)"), module="ids.run"),
    "score memo beyond memory": Case(lambda t: ["score_memo_mb=100000000"],
                                     ("score_memo_mb=100000000 asks for more than half",)),
    "model in an object store without its client": Case(
        lambda t: ["model_uri=s3://bucket/model"],
        ("model_uri='s3://bucket/model'", "install it, or download the model folder")),
    "unknown model URI scheme": Case(lambda t: ["model_uri=foo://bucket/model"],
                                     ("unknown scheme 'foo:'",)),
    "PostgreSQL cluster without its password file": Case(
        lambda t: ["postgres", "--data-dir", str(_bare_cluster(t))],
        ("holds a PostgreSQL cluster", "ids-password"), module="ids.tools.servers"),
    "password with a slash in a store URL": Case(
        lambda t: ["model_uri=models:/ids-cnn-bilstm@champion",
                   "tracking.uri=postgresql://u:S3/cr@t@127.0.0.1:1/db"],
        ("tracking.uri=postgresql://u:***@127.0.0.1:1/db cannot be reached",)),
    "unreachable tracking server": Case(
        lambda t: ["model_uri=models:/ids-cnn-bilstm@champion",
                   "tracking.uri=http://u:S3cr3t@127.0.0.1:1"],
        ("tracking.uri=http://u:***@127.0.0.1:1 cannot be reached (ConnectionRefusedError",)),
    "store lock file is a FIFO": Case(
        lambda t: ["model_uri=models:/ids-cnn-bilstm@champion", f"tracking.uri={_fifo_lock(t)}"],
        ("mlflow.db.lock is a FIFO (named pipe); a SQLite store, its journals and its lock file "
         "must be regular files",)),
    "server port in use": Case(
        lambda t: [f"serve.port={_busy_port()}", f"model_uri={t}/no-model"],
        ("on 127.0.0.1 cannot be used (Address already in use): another server listens there",),
        module="ids.serve"),
}

_MODEL: dict[str, str] = {}


def _empty_store(tmp: Path) -> str:
    return mlflow_store(tmp / "mlruns" / "mlflow.db")


def _existing(tmp: Path) -> Path:
    path = tmp / "alerts.csv"
    path.write_text("keep me\n")
    return path


def _nan_model(tmp: Path) -> Path:
    folder = tmp / "nan-model"
    shutil.copytree(_MODEL["folder"], folder)
    weights = folder / "artifacts" / "scorer" / "weights.npz"
    with np.load(weights) as npz:
        arrays = {k: np.full_like(npz[k], np.nan) for k in npz.files}
    np.savez(weights, **arrays)
    return folder


_PG = "postgresql://u:S3cr3t@127.0.0.1:1/db"  # port 1: nothing listens
_HELD: list[socket.socket] = []  # ports kept busy until the session ends


def _busy_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _HELD.append(sock)
    return sock.getsockname()[1]


def _fifo_lock(tmp: Path) -> str:
    uri = mlflow_store(tmp / "mlruns" / "mlflow.db")
    os.mkfifo(tmp / "mlruns" / "mlflow.db.lock")
    return uri


def _store_file(tmp: Path) -> Path:
    entry = tmp / "cache" / "0123456789abcdef0123"
    entry.mkdir(parents=True)
    (entry / "train.y.npy").write_bytes(b"recorded")
    return entry / "train.y.npy"


def _zeros_zip(tmp: Path, mb: int) -> Path:
    """A zip whose CSV is a header and one line of `mb` MB of zeros."""
    header = _csv(tmp, _flows()).read_bytes().split(b"\n", 1)[0] + b"\n"
    path = tmp / "flows.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("flows.csv", header + b"0" * (mb << 20))
    return path


def _zst(tmp: Path, data: bytes) -> Path:
    import pyarrow as pa

    path = tmp / "flows.csv.zst"
    with pa.CompressedOutputStream(str(path), "zstd") as out:
        out.write(data)
    return path


def _run_stores(tmp: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp}/m.db", f"cache_dir={tmp}/cache"]


def _damaged_parquet(tmp: Path) -> Path:
    path = tmp / "flows.parquet"
    _flows().to_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])  # the footer is gone
    return path


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


def _model_copy(tmp: Path) -> Path:
    folder = tmp / "edited-model"
    shutil.copytree(_MODEL["folder"], folder)
    return folder


def _edited(tmp: Path, **changes) -> Path:
    """A copy of the tiny model with scorer.json entries (or model settings) changed; None
    removes the model setting."""
    folder = _model_copy(tmp)
    path = folder / "artifacts" / "scorer" / "scorer.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if key in meta["model"]:
            if value is None:
                del meta["model"][key]
            else:
                meta["model"][key] = value
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))
    return folder


def _linked_out(tmp: Path) -> Path:
    folder = _model_copy(tmp)
    weights = folder / "artifacts" / "scorer" / "weights.npz"
    weights.unlink()
    weights.symlink_to("/dev/zero")
    return folder


def _bare_cluster(tmp: Path) -> Path:
    folder = tmp / "pg"
    folder.mkdir()
    (folder / "PG_VERSION").write_text("15\n")
    return folder


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tiny_model, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    _MODEL["folder"] = tiny_model[0]
    for limit, value in case.limits.items():
        monkeypatch.setattr(limits, limit, value)
    made = case.make(tmp_path)
    out = tmp_path / "alerts.csv"
    existed = out.exists()
    partials = {p: p.read_bytes() for p in tmp_path.rglob("*.partial")}  # an input, another's
    if case.module == "ids.tools.servers":
        code = servers.main(made)
    else:
        args = [f"hydra.run.dir={tmp_path}/hydra", f"chunk_size={case.chunk_size}"]
        if case.module == "ids.predict":
            args += [f"model_uri={tiny_model[0]}", f"input={_csv(tmp_path, _flows(), 'ok.csv')}",
                     f"output={out}"]
        args += made if isinstance(made, list) else [f"input={made}"]
        if case.module == "ids.run":
            args = [a for a in args if not a.startswith("chunk_size=")]
        capsys.readouterr()
        try:
            run_cli(monkeypatch, case.module, *args)
            code = 0
        except SystemExit as exc:
            code = exc.code
    stdout, stderr = capsys.readouterr()
    assert code == case.code, (stdout[-500:], stderr[-2000:])
    if case.code == 0:
        for fragment in case.expect:
            assert fragment in stdout
        assert pd.read_csv(out)["flow"].tolist() == list(range(300))
        return
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    for fragment in case.expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in stderr
    # Nothing (partially) written: no output unless it was there before, untouched.
    assert out.exists() == existed and (not existed or out.read_text() == "keep me\n")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.partial")} == partials


def test_an_existing_output_is_replaced_with_overwrite_true(tiny_model, tmp_path, monkeypatch):
    out = _existing(tmp_path)
    run_cli(monkeypatch, "ids.predict", f"hydra.run.dir={tmp_path}/hydra",
            f"model_uri={tiny_model[0]}", f"input={_csv(tmp_path, _flows())}", f"output={out}",
            "overwrite=true")
    assert len(pd.read_csv(out)) == 300


def test_docs_table_matches_the_cases():
    text = (ROOT / "docs" / "guide" / "bad-input.md").read_text()
    lines = text.split("<!-- bad-input table -->")[1].strip().splitlines()
    end = next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))
    rows = lines[2:end]  # after the header and its rule
    names = [re.sub(r"\\(.)", r"\1", row.split(" | ")[0][2:].strip()) for row in rows]
    assert names == list(CASES)
    for row, case in zip(rows, CASES.values(), strict=True):
        assert row.rstrip(" |").endswith(str(case.code)), row


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_an_interrupted_predict_leaves_no_output(tiny_model, tmp_path, sig):
    """Interrupted mid-file: the partial file is removed and nothing has the output's name."""
    flows = synthetic.generate(200_000, 5, MIX)
    path = _csv(tmp_path, flows)
    out = tmp_path / "alerts.csv"
    cmd = [sys.executable, "-m", "ids.predict", f"hydra.run.dir={tmp_path}/hydra",
           f"model_uri={tiny_model[0]}", f"input={path}", f"output={out}", "chunk_size=2000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    partial = tmp_path / "alerts.csv.partial"
    try:
        deadline = time.monotonic() + patience(240)
        while not (partial.exists() and partial.stat().st_size > 100_000):  # mid-file
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "predict never started writing"
            time.sleep(0.2)
        proc.send_signal(sig)
        output = proc.communicate(timeout=patience(60))[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, output[-2000:]
    assert not out.exists() and not partial.exists(), output[-2000:]
