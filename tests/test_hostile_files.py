"""Hostile files, data and settings (issue 41): one writer per output, inputs and stores that
are never lost or trusted blindly, bounded decompression and lines, settings checked before
work. Every failure is one line on stderr, exit code 2, no traceback, and nothing that existed
is changed.

Real commands in this process (`run_cli`), the session's tiny model, real files under tmp_path;
the bounds of `ids.data.limits` are lowered where a case would otherwise need gigabytes. The
processes (concurrent `ids.predict`, the abort at exit) carry the `slow` mark.
"""

from __future__ import annotations

import gc
import gzip
import json
import lzma
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_hostile import assert_one_line

from conftest import ROOT, patience, run_cli_status
from ids import outputs
from ids.data import limits, reader, synthetic
from ids.data.flows import DataError, read_flows

MIX = {"Benign": 1.0, "DoS": 3.0}


@pytest.fixture
def flows_csv(tmp_path) -> Path:
    path = tmp_path / "flows.csv"
    synthetic.generate(300, 3, MIX).to_csv(path, index=False)
    return path


def _predict(monkeypatch, capsys, tmp_path, model, *args):
    return run_cli_status(monkeypatch, capsys, "ids.predict", f"hydra.run.dir={tmp_path}/hydra",
                          f"model_uri={model}", *args)


def _lower(monkeypatch, **bounds) -> None:
    for name, value in bounds.items():
        monkeypatch.setattr(limits, name, value)


def _header(flows_csv: Path) -> bytes:
    return flows_csv.read_bytes().split(b"\n", 1)[0] + b"\n"


# --- one writer per output ---------------------------------------------------------------------

def test_a_second_writer_of_one_output_fails_before_writing_and_the_first_wins(
        tiny_model, tmp_path, flows_csv, monkeypatch, capsys):
    """Two commands on one output: the one that comes second fails in one line at once; the
    first one's file is published whole (it holds the partial file's lock meanwhile)."""
    out = tmp_path / "alerts.csv"
    holding, release, done = threading.Event(), threading.Event(), []

    def first() -> None:
        with outputs.replacing(out, overwrite=True) as fh:
            fh.write("flow,score,label\n0,0.5,1\n")
            fh.flush()
            holding.set()
            release.wait(60)
        done.append(True)

    writer = threading.Thread(target=first)
    writer.start()
    try:
        assert holding.wait(60)
        code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0],
                                f"input={flows_csv}", f"output={out}", "overwrite=true")
        assert_one_line(code, err, f"output={out} is being written by another command")
        assert not out.exists()  # nothing published, the first writer's partial untouched
        assert (tmp_path / "alerts.csv.partial").read_text() == "flow,score,label\n0,0.5,1\n"
    finally:
        release.set()
        writer.join(60)
    assert done and out.read_text() == "flow,score,label\n0,0.5,1\n"
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".alerts*"))


@pytest.mark.slow
def test_two_predict_processes_on_one_output_one_wins_whole(tiny_model, tmp_path, flows_csv):
    """The issue's case with real processes: while one `ids.predict` writes an output (a
    stream here, so that it writes for as long as the test needs), a second one on the same
    output exits 2 in one line; the first one's file then holds every flow it was sent."""
    out, partial = tmp_path / "alerts.csv", tmp_path / "alerts.csv.partial"
    base = [sys.executable, "-m", "ids.predict", f"model_uri={tiny_model[0]}", f"output={out}",
            "overwrite=true"]
    first = subprocess.Popen([*base, "input=-", f"hydra.run.dir={tmp_path}/h1"], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        lines = flows_csv.read_bytes().splitlines(keepends=True)
        first.stdin.write(b"".join(lines[:101]))  # the header and 100 flows
        first.stdin.flush()
        deadline = time.monotonic() + patience(240)
        while not partial.exists():
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the first predict never started writing"
            time.sleep(0.1)
        second = subprocess.run([*base, f"input={flows_csv}", f"hydra.run.dir={tmp_path}/h2"],
                                cwd=ROOT, capture_output=True, text=True, timeout=patience(240))
        errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error")]
        assert second.returncode == 2 and len(errors) == 1, second.stderr[-3000:]
        assert "is being written by another command" in errors[0]
        assert first.poll() is None and partial.exists() and not out.exists()
        first.stdin.write(b"".join(lines[101:]))
        _, err = first.communicate(timeout=patience(240))
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err.decode()[-3000:]
    assert pd.read_csv(out)["flow"].tolist() == list(range(300))
    assert not partial.exists()


def test_the_input_named_like_the_outputs_partial_file_is_refused_and_kept(
        tiny_model, tmp_path, flows_csv, monkeypatch, capsys):
    """`input=x.csv.partial output=x.csv` unlinked the input as a stale partial file."""
    inp = tmp_path / "x.csv.partial"
    inp.write_bytes(flows_csv.read_bytes())
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={inp}",
                            f"output={tmp_path}/x.csv")
    assert_one_line(code, err, "is written as x.csv.partial first, and that is the input")
    assert inp.read_bytes() == flows_csv.read_bytes() and not (tmp_path / "x.csv").exists()


def test_a_partial_file_nobody_writes_is_left_alone(tiny_model, tmp_path, flows_csv,
                                                    monkeypatch, capsys):
    """Another command's (or a killed run's) partial file is never removed by a command."""
    stale = tmp_path / "alerts.csv.partial"
    stale.write_text("keep me\n")
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={flows_csv}",
                            f"output={tmp_path}/alerts.csv", "overwrite=true")
    assert_one_line(code, err, "alerts.csv.partial exists and no command is writing it",
                    "remove it")
    assert stale.read_text() == "keep me\n" and not (tmp_path / "alerts.csv").exists()


def test_a_commands_own_exports_reclaim_a_killed_runs_partial_but_not_a_linked_one(tmp_path):
    target = tmp_path / "trials.csv"
    (tmp_path / "trials.csv.partial").write_text("left by a killed sweep\n")
    outputs.write_text(target, "a,b\n", key="sweep.export_dir", reclaim=True)
    assert target.read_text() == "a,b\n" and not (tmp_path / "trials.csv.partial").exists()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    os.link(precious, tmp_path / "trials.csv.partial")  # a second name: not a killed run's
    with pytest.raises(outputs.OutputError, match="no command is writing it"):
        outputs.write_text(target, "c,d\n", key="sweep.export_dir", reclaim=True)
    os.unlink(tmp_path / "trials.csv.partial")
    (tmp_path / "trials.csv.partial").write_text("a user's file\n")  # --json and the like
    with pytest.raises(outputs.OutputError, match="no command is writing it"):
        outputs.write_text(target, "e,f\n", key="--json")
    assert precious.read_text() == "keep me\n" and target.read_text() == "a,b\n"


@pytest.mark.parametrize("how", ["hard link", "another path", "symlinked folder"])
def test_the_input_by_another_name_is_never_the_output(how, tiny_model, tmp_path, flows_csv,
                                                      monkeypatch, capsys):
    before = flows_csv.read_bytes()
    if how == "hard link":
        out = tmp_path / "alias.csv"
        os.link(flows_csv, out)
    elif how == "another path":
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / "flows.csv"
    else:
        (tmp_path / "via").symlink_to(tmp_path)
        out = tmp_path / "via" / "flows.csv"
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={flows_csv}",
                            f"output={out}", "overwrite=true")
    assert_one_line(code, err, "would overwrite the input")
    assert flows_csv.read_bytes() == before


def test_an_output_inside_what_ids_keeps_is_refused(tiny_model, tmp_path, flows_csv,
                                                   monkeypatch, capsys):
    """The prepared store, the model folder being read, the MLflow SQLite store."""
    from world import mlflow_store

    cache = tmp_path / "cache" / "0123456789abcdef0123"
    cache.mkdir(parents=True)
    (cache / "train.y.npy").write_bytes(b"recorded")
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    db = tmp_path / "mlruns" / "mlflow.db"
    model = Path(tiny_model[0])
    kept = {p: p.read_bytes() for p in (cache / "train.y.npy", db)}
    for out, what in ((cache / "train.y.npy", "the prepared store"),
                      (model / "artifacts" / "scorer" / "weights.npz", "the model folder"),
                      (db, "the SQLite store of tracking.uri")):
        code, _, err = _predict(monkeypatch, capsys, tmp_path, model, f"input={flows_csv}",
                                f"output={out}", "overwrite=true", f"cache_dir={tmp_path}/cache",
                                f"tracking.uri={uri}")
        assert_one_line(code, err, f"is inside {what}")
    assert all(p.read_bytes() == b for p, b in kept.items())


def test_an_output_named_like_a_partial_file_is_refused(tiny_model, tmp_path, flows_csv,
                                                        monkeypatch, capsys):
    """`output=x.csv.partial` while another command writes x.csv would replace its partial
    file, which that command then publishes as x.csv."""
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={flows_csv}",
                            f"output={tmp_path}/x.csv.partial")
    assert_one_line(code, err, "names ending in .partial are the files ids writes")
    assert not list(tmp_path.glob("x.csv*"))


@pytest.mark.parametrize("streaming", [False, True], ids=["file", "stream"])
def test_a_fifo_or_a_folder_as_input_is_named(streaming, tiny_model, tmp_path, monkeypatch,
                                              capsys):
    os.mkfifo(tmp_path / "flows.csv")
    for inp, kind in ((tmp_path / "flows.csv", "a FIFO"), (tmp_path, "a folder")):
        out = "-" if streaming else tmp_path / "alerts.csv"
        code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={inp}",
                                f"output={out}")
        assert_one_line(code, err, f"input={inp} is {kind}", "input=-")


# --- decompression, archives, long lines -------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _compressed(path: Path, data: bytes) -> Path:
    name = path.name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif name.endswith(".xz"):
        path.write_bytes(lzma.compress(data))
    elif name.endswith(".bz2"):
        import bz2

        path.write_bytes(bz2.compress(data))
    elif name.endswith(".zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    else:
        _zip(path, {"flows.csv": data})
    return path


@pytest.mark.parametrize("name", ["flows.zip", "flows.csv.gz", "flows.csv.xz", "flows.csv.bz2",
                                  "flows.csv.zst"])
def test_a_decompression_bomb_is_one_line(name, tiny_model, tmp_path, flows_csv, monkeypatch,
                                          capsys):
    """Valid-looking flows that expand beyond the bound (lowered: 1 MiB at 50x here)."""
    _lower(monkeypatch, RATIO_FLOOR=1 << 20, MAX_RATIO=50)
    line = flows_csv.read_bytes().split(b"\n")[1] + b"\n"
    bomb = _compressed(tmp_path / name, _header(flows_csv) + line * ((8 << 20) // len(line)))
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={bomb}",
                            f"output={tmp_path}/alerts.csv")
    assert_one_line(code, err, name, "expands to more than 50 times", "decompression bomb")
    assert not (tmp_path / "alerts.csv").exists() and not list(tmp_path.glob("*.partial"))


def test_a_zip_member_of_zeros_is_one_line_and_leaves_no_reader_behind(tmp_path, flows_csv):
    """A line of 60 MB of zeros behind the header: the parse error left pyarrow's reader
    threads reading a Python stream, which aborted the process at exit (SIGABRT). Every
    stream the reader opened must be released when the error is raised."""
    path = _zip(tmp_path / "zeros.zip", {"flows.csv": _header(flows_csv) + b"0" * (60 << 20)})
    with pytest.raises(DataError, match="a line is longer than 4.0 MiB"):
        read_flows(path)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, reader._Source)]


@pytest.mark.slow
def test_a_zip_of_zeros_never_aborts_the_process(tmp_path, flows_csv):
    """The same in fresh processes (the abort came at exit, 3 runs in 4 before)."""
    path = _zip(tmp_path / "zeros.zip", {"flows.csv": _header(flows_csv) + b"0" * (60 << 20)})
    script = ("import sys\nfrom ids.cli import fail\nfrom ids.data.flows import read_flows\n"
              "try:\n    read_flows(sys.argv[1])\nexcept Exception as exc:\n    fail(exc)\n")
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=patience(120))
        assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
        assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1


def _patched_zip(tmp: Path, flows_csv: Path, offset: int, value: bytes) -> Path:
    """A zip of the flows with bytes of its member's local and central headers replaced."""
    path = _zip(tmp / "odd.zip", {"flows.csv": flows_csv.read_bytes()})
    data = bytearray(path.read_bytes())
    for sig, base in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):  # local, central header
        at = data.find(sig) + offset + base
        data[at: at + len(value)] = value
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("offset, value, fragment", [
    (6, b"\x01\x00", "is encrypted"),  # general purpose flags: bit 0
    (8, b"\x09\x00", "compressed with method 9"),  # deflate64, which Python cannot read
])
def test_a_zip_member_python_cannot_read_is_one_line(offset, value, fragment, tmp_path,
                                                     flows_csv):
    with pytest.raises(DataError, match=fragment):
        read_flows(_patched_zip(tmp_path, flows_csv, offset, value))


def test_a_zip_with_too_many_entries_is_refused_before_they_are_listed(tmp_path, flows_csv,
                                                                       monkeypatch):
    _lower(monkeypatch, MAX_ZIP_ENTRIES=10)
    members = {f"junk/{i}.txt": b"" for i in range(11)} | {"flows.csv": flows_csv.read_bytes()}
    with pytest.raises(DataError, match="holds 12 entries"):
        read_flows(_zip(tmp_path / "many.zip", members))


def test_a_file_with_thousands_of_columns_is_refused(tmp_path, flows_csv, monkeypatch):
    _lower(monkeypatch, MAX_COLUMNS=10)
    with pytest.raises(DataError, match="has 14 columns"):
        read_flows(flows_csv)


def test_a_nested_zip_is_one_line(tmp_path, flows_csv):
    inner = _zip(tmp_path / "inner.zip", {"flows.csv": flows_csv.read_bytes()}).read_bytes()
    with pytest.raises(DataError):  # whatever the CSV reader makes of it: one line
        read_flows(_zip(tmp_path / "outer.zip", {"flows.csv": inner}))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_xz_file_is_one_line(damage, tmp_path, flows_csv):
    """An xz decoder error (lzma.LZMAError) was a traceback."""
    data = lzma.compress(flows_csv.read_bytes())
    path = tmp_path / "flows.csv.xz"
    path.write_bytes(b"not xz at all" * 50 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot be read as xz"):
        read_flows(path)


def test_parquet_metadata_and_rows_are_bounded_before_reading(tmp_path, flows_csv, monkeypatch):
    flows = pd.read_csv(flows_csv)
    path = tmp_path / "flows.parquet"
    flows.to_parquet(path)
    _lower(monkeypatch, MAX_PARQUET_FOOTER=100)
    with pytest.raises(DataError, match="its parquet metadata takes"):
        read_flows(path)
    monkeypatch.undo()
    table = pa.table({**{c: flows[c].iloc[:1] for c in flows.columns if c != "IPV4_SRC_ADDR"},
                      "IPV4_SRC_ADDR": ["1" * (2 << 20)]})  # one 2 MiB flow
    pq.write_table(table, path, compression="zstd")
    with pytest.raises(DataError, match="more than 1.0 MiB a row"):
        read_flows(path)
    big = pa.table({c: np.zeros(400_000, np.int64) for c in flows.columns if c not in
                    ("IPV4_SRC_ADDR", "IPV4_DST_ADDR", "Attack")})
    pq.write_table(big, path, compression="zstd", row_group_size=400_000, use_dictionary=False)
    _lower(monkeypatch, RATIO_FLOOR=1 << 20, MAX_RATIO=50)
    with pytest.raises(DataError, match="row group 0 expands to more than 50 times"):
        read_flows(path)


def test_a_parquet_value_referenced_by_every_row_is_not_expanded(tmp_path, flows_csv):
    """One 2 MiB text value in a parquet dictionary, referenced by 1,000 rows: 2 GB once
    decoded, from a file of kilobytes."""
    flows = pd.read_csv(flows_csv).iloc[:1]
    n = 1000
    columns = {c: pa.array(np.repeat(flows[c].to_numpy(), n)) for c in flows.columns
               if c != "IPV4_SRC_ADDR"}
    columns["IPV4_SRC_ADDR"] = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int32)), pa.array(["1" * (2 << 20)]))
    path = tmp_path / "flows.parquet"
    pq.write_table(pa.table(columns), path, compression="zstd")
    with pytest.raises(DataError, match="1,000 rows hold 2.0 GiB of text"):
        read_flows(path)


def test_batches_are_bounded_in_bytes_and_the_result_does_not_change(tmp_path, flows_csv,
                                                                    monkeypatch):
    """Rows of megabytes each would fill a batch of 262,144 rows; a batch is handed out once
    it holds MAX_BATCH_BYTES, and what is read is the same."""
    whole = read_flows(flows_csv)
    _lower(monkeypatch, MAX_BATCH_BYTES=8 << 10)
    batches = list(reader.FlowFile(flows_csv).batches(1000))
    assert len(batches) > 3 and [int(b.index[0]) for b in batches][:2] != [0, 1000]
    pd.testing.assert_frame_equal(read_flows(flows_csv), whole)


def test_a_long_unterminated_line_on_standard_input_is_bounded(tiny_model, tmp_path, flows_csv,
                                                                monkeypatch, capsys):
    """200 MB without a line end cost 2.2 GB; now reading stops past MAX_ROW_BYTES."""
    import resource

    _lower(monkeypatch, MAX_ROW_BYTES=1 << 16)
    path = tmp_path / "long.csv"
    path.write_bytes(flows_csv.read_bytes() + b"1" * (8 << 20))
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(path) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        code, out, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], "input=-",
                                  "output=-")
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
    assert_one_line(code, err, "standard input, flow 300 (0-based)", "a line longer than 64.0 KiB")
    assert grown < 200, f"peak memory grew by {grown:.0f} MB"


def test_a_header_only_stream_is_refused_like_a_header_only_file(tiny_model, tmp_path,
                                                                  flows_csv, monkeypatch, capsys):
    path = tmp_path / "header.csv"
    path.write_bytes(_header(flows_csv))
    with open(path) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        code, out, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], "input=-",
                                  "output=-")
    assert_one_line(code, err, "standard input has no flows (only a header line)")
    assert out == ""
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={path}",
                            f"output={tmp_path}/alerts.csv")
    assert_one_line(code, err, "header.csv has no flows (only a header?)")


# --- values a reader typed as something else -----------------------------------------------------

def _typed_parquet(tmp: Path, flows_csv: Path, values) -> Path:
    flows = pd.read_csv(flows_csv)
    flows["IN_BYTES"] = values(len(flows))
    path = tmp / "flows.parquet"
    flows.to_parquet(path)
    return path


@pytest.mark.parametrize("kind, make", [
    ("timestamps", lambda t, f: _csv_with(t, f, "2024-01-01 00:00:00")),
    ("true/false values", lambda t, f: _csv_with(t, f, "true")),
    ("timestamps", lambda t, f: _typed_parquet(t, f, lambda n: pd.date_range("2024", periods=n))),
    ("durations", lambda t, f: _typed_parquet(t, f, lambda n: pd.to_timedelta(np.arange(n), "s"))),
    ("true/false values", lambda t, f: _typed_parquet(t, f, lambda n: np.arange(n) % 2 == 0)),
], ids=["csv timestamps", "csv booleans", "parquet timestamps", "parquet durations",
        "parquet booleans"])
def test_a_counter_read_as_dates_or_booleans_is_refused_not_converted(kind, make, tmp_path,
                                                                      flows_csv):
    """A timestamp in IN_BYTES was scored as nanoseconds since 1970, `true` as 1."""
    with pytest.raises(DataError, match=f"'IN_BYTES' must be numeric, but it was read as {kind}"):
        read_flows(make(tmp_path, flows_csv), require_label=False)


def _csv_with(tmp: Path, flows_csv: Path, value: str) -> Path:
    flows = pd.read_csv(flows_csv)
    flows["IN_BYTES"] = value
    path = tmp / "typed.csv"
    flows.to_csv(path, index=False)
    return path


# --- settings --------------------------------------------------------------------------------------

SETTINGS = [
    ("trainer.lr=inf", "trainer.lr must be a finite number"),
    ("trainer.lr=-0.001", "trainer.lr must be > 0"),
    ("trainer.weight_decay=nan", "trainer.weight_decay must be a finite number"),
    ("seed=-1", "seed must be in [0, 4,294,967,275]"),
    ("data.seed=99999999999999999999", "data.seed must be in [0, 4,294,967,295]"),
    ("sweep.seed=-3", "sweep.seed must be in"),
    ("data.n_flows=1000000000000", "data.n_flows must be in [100,"),
    ("data.class_mix.DoS=-1", "data.class_mix must be weights >= 0"),
    ("data.class_mix.DoS=inf", "data.class_mix.DoS must be a finite number"),
    ("trainer.threads=100000", "trainer.threads must be in [0,"),
    ("trainer.epochs=1000000000", "trainer.epochs must be in [1, 1,000,000]"),
    ("sweep.workers=100000", "sweep.workers must be in [1,"),
    ("sweep.timeout_seconds=-1", "sweep.timeout_seconds must be null (no time limit) or in"),
    ("sweep.heartbeat_seconds=1000000000000", "sweep.heartbeat_seconds must be in [1, 86,400]"),
    ("sweep.max_retry=-1", "sweep.max_retry must be in [0, 1,000]"),
    ("promote.trial=99999999999999", "promote.trial must be null (the best trial) or in"),
    ("serve.port=70000", "serve.port must be in [1, 65,535]"),
    ("serve.workers=100000", "serve.workers must be in [0,"),
    ("chunk_size=0", "chunk_size must be >= 1"),
    ("model.conv_layers=1000000000", "model.conv_layers must be in [0, 64]"),
    ("+sweep.pruner_args.x=1e999", "sweep.pruner_args.x must be a finite number"),
]


@pytest.mark.parametrize("override, fragment", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_every_numeric_setting_is_checked_before_work(override, fragment, tmp_path,
                                                      monkeypatch, capsys):
    """Through a command (`ids.run`): one line, nothing prepared, no run recorded."""
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.run", override,
                                  f"hydra.run.dir={tmp_path}/hydra", f"cache_dir={tmp_path}/cache",
                                  f"tracking.uri=sqlite:///{tmp_path}/m.db")
    assert_one_line(code, err, fragment)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "m.db").exists()


def test_model_sizes_in_training_follow_the_memory_rule_of_model_files(tmp_path, monkeypatch,
                                                                      capsys):
    """`model.lstm_units=200000 model.filters=50000` allocated 298 GiB in training."""
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.run", "model.lstm_units=200000",
                                  "model.filters=50000", f"hydra.run.dir={tmp_path}/hydra",
                                  f"cache_dir={tmp_path}/cache",
                                  f"tracking.uri=sqlite:///{tmp_path}/m.db")
    assert_one_line(code, err, "model.filters=50000", "model.lstm_units=200000",
                    "GiB of memory (an estimate)", "available here")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("override, fragment", [
    ("score_memo_mb=100000000", "score_memo_mb=100000000 asks for more than half"),
    ("model_uri=s3://bucket/model", "model_uri='s3://bucket/model'"),
    ("model_uri=foo://bucket/model", "unknown scheme 'foo:'"),
])
def test_predict_settings_that_passed_the_schema_are_one_line(override, fragment, tmp_path,
                                                              flows_csv, monkeypatch, capsys):
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.predict", f"input={flows_csv}",
                                  f"output={tmp_path}/alerts.csv", override,
                                  f"hydra.run.dir={tmp_path}/hydra",
                                  *([] if override.startswith("model_uri") else
                                    [f"model_uri={tmp_path}/no-model"]))
    assert_one_line(code, err, fragment)
    assert not (tmp_path / "alerts.csv").exists()


# --- the prepared store proves itself -------------------------------------------------------------

def _store(tmp_path):
    from conftest import tiny_overrides
    from ids.config import compose
    from ids.data.prepare import clear_cache, prepare

    cfg = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000"])
    clear_cache()
    made = prepare(cfg.data, cache_dir=tmp_path / "cache")
    entry = next(p for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    return cfg, made, entry


def _reopen(cfg, tmp_path):
    from ids.data.prepare import clear_cache, prepare

    clear_cache()
    return prepare(cfg.data, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("tamper", ["labels zeroed", "labels flipped, mtime restored",
                                    "a feature changed", "meta.json edited"])
def test_a_changed_store_is_prepared_again_never_used(tamper, tmp_path, capsys):
    cfg, made, entry = _store(tmp_path)
    kept = {"train.y": np.array(made.train.y), "val.y": np.array(made.val.y),
            "train.X": np.array(made.train.X)}  # `made` maps the files changed below
    target = {"labels zeroed": "train.y.npy", "labels flipped, mtime restored": "val.y.npy",
              "a feature changed": "table.npy", "meta.json edited": "meta.json"}[tamper]
    path = entry / target
    st = os.stat(path)
    if target.endswith(".npy"):
        a = np.load(path, mmap_mode="r+")
        if tamper == "labels zeroed":
            a[:] = 0
        elif tamper == "a feature changed":
            a[0, 0] += 1
        else:
            a[:] = 1 - a
        a.flush()
        del a
    else:
        meta = json.loads(path.read_text())
        meta["categories"] = list(reversed(meta["categories"]))
        path.write_text(json.dumps(meta).ljust(st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime
    capsys.readouterr()
    again = _reopen(cfg, tmp_path)
    err = capsys.readouterr().err
    assert f"{target} does not match its checksum" in err and "preparing it again" in err
    for name, values in kept.items():
        split, field = name.split(".")
        np.testing.assert_array_equal(getattr(again.split(split), field), values)


def test_an_unchanged_store_opens_by_stat_and_a_copied_one_by_hash(tmp_path, capsys):
    import shutil

    from ids.data import cache

    cfg, made, entry = _store(tmp_path)
    stamps = json.loads((entry / cache.VERIFIED).read_text())
    assert set(stamps) == set(cache.FILES)
    _reopen(cfg, tmp_path)
    assert (entry / cache.LOADS).read_text().split() == [str(os.getpid())]  # used, not rebuilt
    copy = entry.with_name(entry.name + "-copy")
    shutil.copytree(entry, copy)  # new inodes: every file is hashed once, then stamped
    shutil.rmtree(entry)
    copy.rename(entry)
    _reopen(cfg, tmp_path)
    assert "preparing it again" not in capsys.readouterr().err
    assert len((entry / cache.LOADS).read_text().split()) == 2
    assert json.loads((entry / cache.VERIFIED).read_text()) != stamps
    manifest = json.loads((entry / cache.CHECKSUMS).read_text())
    manifest["files"]["train.y.npy"][1] = "0" * 32
    (entry / cache.CHECKSUMS).write_text(json.dumps(manifest))
    (entry / cache.VERIFIED).unlink()
    with pytest.raises(cache.Changed, match="train.y.npy does not match its checksum"):
        cache.load(entry)


@pytest.mark.parametrize("name", ["checksums.json", "verified.json", "train.y.npy",
                                  "loads.log"])
def test_a_special_file_in_a_store_never_blocks_and_is_not_used(name, tmp_path, capsys):
    """A FIFO in an entry blocked the first read of it forever."""
    from ids.data import cache

    cfg, made, entry = _store(tmp_path)
    y = np.array(made.train.y)
    (entry / name).unlink(missing_ok=True)
    os.mkfifo(entry / name)
    again = _reopen(cfg, tmp_path)  # no read of the FIFO: it would block without a writer
    np.testing.assert_array_equal(again.train.y, y)
    noted = "preparing it again" in capsys.readouterr().err
    assert noted == (name in (cache.CHECKSUMS, "train.y.npy"))  # the others are not data
    assert all(os.path.isfile(entry / f) for f in (*cache.FILES, cache.CHECKSUMS))


def test_the_checksums_are_those_of_the_bytes_on_disk(tmp_path):
    import hashlib

    from ids.data import cache

    _, _, entry = _store(tmp_path)
    manifest = json.loads((entry / cache.CHECKSUMS).read_text())
    assert set(manifest["files"]) == set(cache.FILES)
    for name, (size, digest) in manifest["files"].items():
        data = (entry / name).read_bytes()
        assert (len(data), hashlib.blake2b(data, digest_size=16).hexdigest()) == (size, digest)


def test_a_whole_compressed_read_leaves_no_stream_behind(tmp_path):
    path = tmp_path / "flows.csv.gz"
    path.write_bytes(gzip.compress(synthetic.generate(500, 1, MIX).to_csv(index=False).encode()))
    assert len(read_flows(path)) == 500
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, reader._Source)]
