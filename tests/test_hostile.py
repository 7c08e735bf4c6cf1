"""Hostile-but-fair input, one test per class of issue 25: special files as output, streams
into existing files, passwords in unreachable URLs and in Hydra's own errors, model files that
lie, damaged files, closed streams, permissions. Every failure is one line on stderr, exit
code 2, no traceback, no password, and nothing that existed is changed.

Real commands in this process (`run_cli`), the session's tiny model, real files under tmp_path.
The full disk, the read-only disk and signals are in tests/test_faults.py, the first-use races
in tests/test_first_use.py, generated inputs in tests/test_properties.py.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli_status as cli
from ids import outputs
from ids.data import synthetic

SECRET = "PASSWORD-h25"


def assert_one_line(code: int, err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err[-3000:])
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def flows_csv(tmp_path) -> Path:
    path = tmp_path / "flows.csv"
    synthetic.generate(300, 3, {"Benign": 1.0, "DoS": 3.0}).to_csv(path, index=False)
    return path


def _predict(monkeypatch, capsys, tmp_path, model, *args):
    return cli(monkeypatch, capsys, "ids.predict", f"hydra.run.dir={tmp_path}/hydra",
               f"model_uri={model}", *args)


# --- writing where it must not ------------------------------------------------------------------

def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "out")
    return tmp / "out"


def _device(tmp: Path) -> Path:
    try:  # a character device of our own (the same numbers as /dev/null), never /dev itself
        os.mknod(tmp / "out", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return tmp / "out"


def _folder(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    return tmp / "out"


def _link(tmp: Path) -> Path:
    (tmp / "target.csv").write_text("keep me\n")
    (tmp / "out").symlink_to(tmp / "target.csv")
    return tmp / "out"


@pytest.mark.parametrize("make, kind", [(_fifo, "a FIFO"), (_device, "a character device"),
                                        (_folder, "a folder"), (_link, "a symbolic link")])
def test_special_files_as_output_are_refused_by_name_even_with_overwrite(
        make, kind, tiny_model, tmp_path, flows_csv, monkeypatch, capsys):
    out = make(tmp_path)
    before = os.lstat(out)
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={flows_csv}",
                            f"output={out}", "overwrite=true")
    assert_one_line(code, err, f"output={out} is {kind}", "regular files only")
    after = os.lstat(out)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not list(tmp_path.glob("*.partial"))
    if kind == "a symbolic link":
        assert (tmp_path / "target.csv").read_text() == "keep me\n"


def test_a_stream_into_an_existing_file_keeps_the_exists_rule(tiny_model, tmp_path, flows_csv,
                                                               monkeypatch, capsys):
    out = tmp_path / "existing.csv"
    out.write_text("keep me\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(flows_csv.read_text().replace("IN_BYTES", "in_bytes", 1))
    for extra, fragment in (([], "exists; choose another file"),
                            (["overwrite=true"], "standard input, flows 0-299")):
        with open(bad) as stdin:
            monkeypatch.setattr(sys, "stdin", stdin)
            code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], "input=-",
                                    f"output={out}", *extra)
        assert_one_line(code, err, fragment)
        assert out.read_text() == "keep me\n"
    with open(flows_csv) as stdin:  # good flows with overwrite=true: replaced, whole
        monkeypatch.setattr(sys, "stdin", stdin)
        code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], "input=-",
                                f"output={out}", "overwrite=true")
    assert code == 0, err
    assert pd.read_csv(out)["flow"].tolist() == list(range(300))
    assert not list(tmp_path.glob("*.partial"))


def test_the_bench_refuses_a_special_json_path_before_measuring(tmp_path, capsys):
    from ids.tools import bench

    os.mkfifo(tmp_path / "b.json")
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--json", str(tmp_path / "b.json")])
    assert exit_info.value.code == 2 and "is a FIFO" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(tmp_path / "b.json").st_mode)


def test_sweep_exports_refuse_a_special_file(tmp_path):
    os.mkfifo(tmp_path / "trials.csv")
    with pytest.raises(outputs.OutputError, match="trials.csv is a FIFO"):
        outputs.write_text(tmp_path / "trials.csv", "a,b\n", key="sweep.export_dir")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "trials.csv").st_mode)


# --- secrets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, args", [
    ("ids.run", ["data.n_flows=500"]),
    ("ids.evaluate", []),
    ("ids.predict", ["model_uri=models:/ids-cnn-bilstm@champion", "input=x.csv", "output=y.csv"]),
])
def test_an_unreachable_store_url_with_a_password_never_prints_it(module, args, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
    started = time.monotonic()
    code, out, err = cli(monkeypatch, capsys, module, f"tracking.uri={uri}",
                         f"hydra.run.dir={tmp_path}/hydra", f"cache_dir={tmp_path}/cache", *args)
    assert_one_line(code, err, "tracking.uri=postgresql://u:***@127.0.0.1:1/db",
                    "cannot be reached")
    assert time.monotonic() - started < 60  # not MLflow's minutes of retries
    assert SECRET not in out + err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()
                and SECRET in p.read_text(errors="replace")]


@pytest.mark.parametrize("override, fragment", [
    (f"tracking.urx=postgresql://u:{SECRET}@h/db", "Could not override 'tracking.urx'"),
    (f"tracking.uri=postgresql://u:{SECRET}{{x@h/db", "mismatched input"),
    (f"+nosuch=postgresql://u:{SECRET}@h/db", "nosuch"),
])
def test_hydras_own_errors_are_one_redacted_line(override, fragment, tmp_path, monkeypatch,
                                                 capsys):
    code, out, err = cli(monkeypatch, capsys, "ids.run", override,
                         f"hydra.run.dir={tmp_path}/hydra")
    assert_one_line(code, err, fragment)
    assert SECRET not in out + err


def test_a_bug_keeps_its_traceback_and_logs_and_warnings_lose_the_password(tmp_path, monkeypatch,
                                                                           capsys):
    """Whatever prints it: a log line (console and Hydra's <job>.log), a warning, the traceback
    of a bug (exit code 1: a bug is not bad input)."""
    import logging
    import warnings

    def buggy(cfg):
        logging.getLogger("ids.test").warning("connecting to postgresql://u:%s@h/db", SECRET)
        warnings.warn(f"slow store postgresql://u:{SECRET}@h/db", UserWarning, stacklevel=1)
        raise RuntimeError(f"bug while using postgresql://u:{SECRET}@h/db")

    monkeypatch.setattr("ids.serving.predict.predict", buggy)  # what `ids.predict` runs
    code, out, err = cli(monkeypatch, capsys, "ids.predict", f"hydra.run.dir={tmp_path}/hydra")
    assert code == 1 and "Traceback" in err and "RuntimeError: bug while using" in err
    assert "postgresql://u:***@h/db" in err and SECRET not in out + err
    logs = list((tmp_path / "hydra").glob("*.log"))
    assert logs and "postgresql://u:***@h/db" in logs[0].read_text()
    assert not [p for p in logs if SECRET in p.read_text()]


# --- OS and format errors ------------------------------------------------------------------------

def _parquet(tmp: Path, flows_csv: Path, damage) -> Path:
    path = tmp / "flows.parquet"
    pd.read_csv(flows_csv).to_parquet(path)
    path.write_bytes(damage(path.read_bytes()))
    return path


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"PAR1" + b"\0" * 64,
                                    lambda b: b[:100] + bytes(len(b) - 200) + b[-100:]],
                         ids=["truncated", "garbage", "zeroed middle"])
@pytest.mark.parametrize("module", ["ids.predict", "ids.run"])
def test_a_damaged_parquet_file_is_one_line(module, damage, tiny_model, tmp_path, flows_csv,
                                            monkeypatch, capsys):
    path = _parquet(tmp_path, flows_csv, damage)
    if module == "ids.predict":
        code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={path}",
                                f"output={tmp_path}/alerts.csv")
    else:
        code, _, err = cli(monkeypatch, capsys, "ids.run", "data=nf_bot_iot",
                           f"data.path={path}", f"hydra.run.dir={tmp_path}/hydra",
                           f"tracking.uri=sqlite:///{tmp_path}/m.db", "cache_dir=null")
    assert_one_line(code, err, "flows.parquet", "parquet")
    assert not (tmp_path / "alerts.csv").exists()


def test_a_closed_standard_input_is_one_line(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)  # what Python sets for `<&-`
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], "input=-", "output=-")
    assert_one_line(code, err, "standard input is closed")


def test_a_write_the_os_refuses_is_one_line_and_changes_nothing(tiny_model, tmp_path,
                                                                flows_csv, monkeypatch, capsys):
    """EACCES as an injected OSError (as root, permission bits do not stop a write)."""
    out = tmp_path / "alerts.csv"
    out.write_text("keep me\n")

    def refused(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(outputs, "_create", refused)
    code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], f"input={flows_csv}",
                            f"output={out}", "overwrite=true")
    assert_one_line(code, err, f"output={out} could not be written", "EACCES", "no permission")
    assert out.read_text() == "keep me\n" and not list(tmp_path.glob("*.partial"))


def test_a_closed_output_pipe_is_one_line(tiny_model, tmp_path, flows_csv, monkeypatch, capsys):
    class ClosedPipe:
        closed = False  # the reader went away; the file object does not know yet

        def write(self, _text):
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        def flush(self):
            pass

    with open(flows_csv) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdout", ClosedPipe())
        monkeypatch.setattr(os, "dup2", lambda *a: None)  # keep pytest's real stdout
        code, _, err = _predict(monkeypatch, capsys, tmp_path, tiny_model[0], "input=-",
                                "output=-")
    assert_one_line(code, err, "the output stream was closed", "EPIPE")


# --- silent acceptance ---------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["IN_BYTES,IN_BYTES", "IN_BYTES, IN_BYTES"],
                         ids=["exact", "with a space"])
def test_a_repeated_column_is_refused_not_first_one_wins(header, tmp_path, flows_csv):
    from ids.data.flows import DataError, read_flows

    lines = flows_csv.read_text().splitlines()
    lines[0] = lines[0].replace("IN_BYTES,OUT_BYTES", header)
    path = tmp_path / "dup.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="column 'IN_BYTES' appears 2 times"):
        read_flows(path)


def test_an_identifier_with_a_carriage_return_stays_one_output_line(tiny_model, tmp_path,
                                                                    flows_csv):
    """Found by the generated files (tests/test_properties.py): a parquet identifier holding
    '\\r' split its output line for every CSV reader (pandas quotes only ',', '"' and '\\n')."""
    from ids.serving.files import score_file

    flows = pd.read_csv(flows_csv)
    flows.loc[3, "IPV4_SRC_ADDR"] = "192.168.100\r62167"
    flows.to_parquet(tmp_path / "flows.parquet")
    n, _ = score_file(tiny_model[1], tmp_path / "flows.parquet", tmp_path / "out.csv")
    scored = pd.read_csv(tmp_path / "out.csv")
    assert len(scored) == n == len(flows)
    assert scored.loc[3, "IPV4_SRC_ADDR"] == "192.168.100\r62167"


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_ragged_line_that_is_not_utf8_is_one_line_without_a_traceback(tmp_path, flows_csv,
                                                                         capsys):
    """Found by the generated files (tests/test_properties.py): pyarrow decodes a ragged line
    before handing it to the reader's handler; a byte that is not UTF-8 made Python print an
    'Exception ignored' traceback on stderr next to the one error line."""
    from ids.data.flows import DataError, read_flows

    lines = Path(flows_csv).read_bytes().split(b"\n")
    cells = lines[5].split(b",")
    lines[5] = b",".join(cells[:7] + [cells[7] + b"\xac"] + cells[9:])  # one field short
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match="is not a readable CSV"):
        read_flows(path)
    err = capsys.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err, err
