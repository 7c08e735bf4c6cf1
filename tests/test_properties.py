"""Property-based tests (hypothesis) of the flow reader and the model-file loader over generated
hostile inputs: what no one listed.

Invariant, whatever is generated: the call either succeeds with a sane result, or raises one of
the errors `ids.cli` reports in one line (exit code 2, no traceback: `cli.problem` has a line
for it and it is a known error type); an existing output is not changed and no `.partial` is
left; every example ends within its deadline, and the process's peak memory stays bounded.

Budgets: `make test` tries FAST examples per property (seconds); the `slow` run tries SLOW
(docs/guide/bad-input.md says how many in all and that all hold). No example database is written
(database=None), so nothing lands in the checkout.
"""

from __future__ import annotations

import gzip
import io
import json
import resource
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_models import lying_npz

from conftest import SLOWDOWN, run_cli
from ids import cli
from ids.config import InputError
from ids.data import synthetic
from ids.data.flows import read_flows

BUDGETS = {"fast": {"reader": 40, "model": 30, "cli": 4},
           "slow": {"reader": 1000, "model": 150, "cli": 30}}
budgets = pytest.mark.parametrize("budget", ["fast", pytest.param("slow", marks=pytest.mark.slow)])
BASE = synthetic.generate(40, 9, {"Benign": 1.0, "DoS": 3.0})
KEEP = "keep me\n"


def _settings(n: int, deadline_ms: int):
    return settings(max_examples=n, deadline=deadline_ms * SLOWDOWN, database=None,  # a busy host
                    suppress_health_check=list(HealthCheck), derandomize=False)


def _with_a_hostile_file(n: int, deadline_ms: int, tmp: Path, out: Path):
    """Run the decorated check(path) on `n` generated flow files, `out` holding KEEP before each."""
    def wrap(check):
        @_settings(n, deadline_ms)
        @given(data=st.data())
        def run(data) -> None:
            path = data.draw(flow_files(tmp))
            out.write_text(KEEP)
            check(path)
        return run
    return wrap


class PeakMemory:
    """Asserts that the peak RSS of this process grew by less than `mb` over the block."""

    def __init__(self, mb: int) -> None:
        self.mb = mb

    def __enter__(self):
        self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.start) / 1024
        assert exc[0] is not None or grown < self.mb, f"peak memory grew by {grown:.0f} MB"


def assert_known(exc: BaseException) -> None:
    """What ids.cli turns into one `error:` line with exit code 2."""
    assert isinstance(exc, InputError), f"{type(exc).__name__}: {exc}"
    line = cli.problem(exc)
    assert line and "Traceback" not in line


# --- hostile values and files ------------------------------------------------------------------

cells = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "-1", "-0", "0x1F", "1,5", "🙂",
                     "\"", "\"a\nb\"", "\\N", "null", "True", "2.5", "9" * 30, " 7 ", "\x00"]),
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(repr),
    st.text(max_size=12))
names = st.one_of(st.sampled_from(list(BASE.columns)), st.text(max_size=10),
                  st.sampled_from(list(BASE.columns)).map(lambda c: f" {c} "))


@st.composite
def flow_frames(draw) -> pd.DataFrame:
    """The base flows with a few hostile edits: cells, columns dropped, renamed or repeated."""
    df = BASE.iloc[: draw(st.integers(0, len(BASE)))].astype(object).copy()
    for _ in range(draw(st.integers(0, 4))):
        if len(df) and draw(st.booleans()):
            df.iat[draw(st.integers(0, len(df) - 1)),
                   draw(st.integers(0, df.shape[1] - 1))] = draw(cells)
        else:
            cols = list(df.columns)
            i = draw(st.integers(0, len(cols) - 1))
            kind = draw(st.sampled_from(["drop", "rename", "repeat"]))
            if kind == "drop":
                df = df.drop(columns=cols[i])
            elif kind == "rename":
                cols[i] = draw(names)
                df.columns = cols
            else:
                df = pd.concat([df, df.iloc[:, [i]]], axis=1)
    return df


@st.composite
def flow_files(draw, tmp: Path) -> Path:
    """A flow file in one of the readable formats, whole or damaged at the byte level."""
    df = draw(flow_frames())
    fmt = draw(st.sampled_from(["csv", "csv.gz", "zip", "parquet"]))
    if fmt == "parquet":
        buf = io.BytesIO()
        try:
            df.astype(str).to_parquet(buf)
        except ValueError:  # e.g. repeated column names: parquet refuses to write them
            fmt, data = "csv", df.to_csv(index=False).encode()
        else:
            data = buf.getvalue()
    else:
        data = df.to_csv(index=False, sep=draw(st.sampled_from([",", ",", ";"]))).encode()
        if fmt == "csv.gz":
            data = gzip.compress(data)
        elif fmt == "zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                for member in draw(st.lists(st.sampled_from(["flows.csv", "a/b.csv", "x.txt"]),
                                            min_size=1, max_size=2, unique=True)):
                    zf.writestr(member, data)
            data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "prefix"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif damage == "prefix":
        data = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"PK\x03\x04", b"\x1f\x8b"])) + data
    path = tmp / f"flows.{fmt}"
    path.write_bytes(data)
    return path


# --- the flow reader -----------------------------------------------------------------------------

@budgets
def test_the_flow_reader_holds_on_generated_hostile_files(budget, tiny_model, tmp_path):
    from ids.serving.files import score_file

    scorer, tmp, n = tiny_model[1], tmp_path, BUDGETS[budget]["reader"]
    out = tmp / "alerts.csv"

    @_with_a_hostile_file(n, 20_000, tmp, out)
    def check(path: Path) -> None:
        for read in (lambda: read_flows(path, require_label=False),
                     lambda: score_file(scorer, path, out, chunk_size=17, overwrite=True)):
            try:
                result = read()
            except Exception as exc:  # noqa: BLE001 - the property says which are allowed
                assert_known(exc)
                assert out.read_text() == KEEP
            else:
                if isinstance(result, pd.DataFrame):  # read_flows: canonical and finite
                    feats = result.select_dtypes("number")
                    assert len(result) and np.isfinite(feats.to_numpy(np.float64)).all()
                else:  # score_file: every flow scored, in [0, 1]
                    scored = pd.read_csv(out)
                    assert len(scored) == result[0] and scored["score"].between(0, 1).all()
                    out.write_text(KEEP)
            assert not list(tmp.glob("*.partial"))

    with PeakMemory(800):
        check()


# --- the model-file loader -----------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
              st.sampled_from([0, 1, -1, 2**31, 10**9, 50_000]),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


@st.composite
def model_damage(draw, meta: dict):
    """(file name, new bytes) for one hostile edit of a model folder."""
    target = draw(st.sampled_from(["scorer.json", "scorer.json", "scorer.json", "MLmodel",
                                   "weights.npz", "preprocessor.npz"]))
    if target == "scorer.json":
        meta = json.loads(json.dumps(meta))
        section = draw(st.sampled_from([None, "model", "preprocessor"]))
        node = meta if section is None else meta[section]
        key = draw(st.one_of(st.sampled_from(sorted(node)), st.text(max_size=6)))
        if draw(st.integers(0, 4)) == 0:
            node.pop(key, None)
        else:
            node[key] = draw(json_values)
        raw = json.dumps(meta).encode()
        if draw(st.integers(0, 6)) == 0:
            raw = raw[: draw(st.integers(0, len(raw)))]
        return target, raw
    if target == "MLmodel":
        return target, draw(st.one_of(
            st.builds(lambda v: json.dumps({"flavors": {"python_function": v}}).encode(),
                      json_values),
            st.binary(max_size=200),
            st.sampled_from([b"- a\n", b"flavors: 3\n", b"a: &x [1]\nb: *x\n", b"\xff\xfe"])))
    return target, draw(st.one_of(st.binary(max_size=300), st.builds(_npz, st.integers(0, 3)),
                                  st.builds(lying_npz, st.integers(9, 2**50))))


def _npz(kind: int) -> bytes:
    buf = io.BytesIO()
    arrays = [{"w": np.zeros((2, 2))}, {"w": np.array(["text"])},
              {"log_mean_": np.full(5, np.nan)}, {}][kind]
    np.savez(buf, **arrays)
    return buf.getvalue()


@budgets
def test_the_model_loader_holds_on_generated_hostile_model_files(budget, tiny_model, tmp_path):
    from ids.tracking.registry import load_scorer

    tmp, n, source = tmp_path, BUDGETS[budget]["model"], Path(tiny_model[0])
    meta = json.loads((source / "artifacts/scorer/scorer.json").read_text())
    flows = BASE.drop(columns=["Label", "Attack"])

    @_settings(n, deadline_ms=30_000)
    @given(damage=model_damage(meta))
    def check(damage) -> None:
        folder = tmp / "model"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(source, folder)
        name, raw = damage
        (folder / name if name == "MLmodel" else folder / "artifacts/scorer" / name).write_bytes(raw)
        try:
            scorer = load_scorer(str(folder))
        except Exception as exc:  # noqa: BLE001 - the property says which are allowed
            assert_known(exc)
            return
        assert 0 <= scorer.threshold <= 1 and scorer.window >= 1
        scores = scorer.predict(flows)["score"].to_numpy()
        assert len(scores) == len(flows) and ((scores >= 0) & (scores <= 1)).all()

    with PeakMemory(1500):
        check()


# --- the same through the command: exit code 2, one line -----------------------------------------

@budgets
def test_predict_says_one_line_for_generated_hostile_files(budget, tiny_model, tmp_path,
                                                           monkeypatch, capsys):
    tmp, n = tmp_path, BUDGETS[budget]["cli"]
    out = tmp / "alerts.csv"

    @_with_a_hostile_file(n, 60_000, tmp, out)
    def check(path: Path) -> None:
        capsys.readouterr()
        try:
            run_cli(monkeypatch, "ids.predict", f"hydra.run.dir={tmp}/hydra",
                    f"model_uri={tiny_model[0]}", f"input={path}", f"output={out}",
                    "overwrite=true", "chunk_size=13")
            code = 0
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        if code == 0:
            assert out.read_text() != KEEP
            return
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
        assert out.read_text() == KEEP and not list(tmp.glob("*.partial"))

    check()


# --- concurrent writers of one output ------------------------------------------------------------

@budgets
def test_concurrent_writers_of_one_output_never_mix_or_lose_a_file(budget, tmp_path):
    """Threads writing the same output at generated moments, with or without overwrite, onto
    an existing file or none: the file is always one writer's whole content (or the existing
    one), every loser fails with an OutputError before it writes, and no partial or scratch
    file is left."""
    from ids import outputs

    n = {"fast": 25, "slow": 300}[budget]

    @_settings(n, deadline_ms=20_000)
    @given(starts=st.lists(st.floats(0, 0.02), min_size=2, max_size=4),
           overwrite=st.booleans(), existing=st.booleans())
    def check(starts, overwrite, existing) -> None:
        folder = tmp_path / "out"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        out = folder / "alerts.csv"
        if existing:
            out.write_text(KEEP)
        results: dict[int, object] = {}

        def write(i: int, delay: float) -> None:
            time.sleep(delay)
            content = "".join(f"{i},{j}\n" for j in range(200))
            try:
                with outputs.replacing(out, overwrite=overwrite) as fh:
                    for j in range(0, len(content), 400):
                        fh.write(content[j: j + 400])
                        time.sleep(0.001)
                results[i] = content
            except outputs.OutputError as exc:
                results[i] = exc

        threads = [threading.Thread(target=write, args=(i, d)) for i, d in enumerate(starts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        won = [c for c in results.values() if isinstance(c, str)]
        lost = [e for e in results.values() if isinstance(e, outputs.OutputError)]
        assert len(won) + len(lost) == len(starts)
        for exc in lost:
            assert any(s in str(exc) for s in ("being written by another command", "exists",
                                               "appeared while it was written")), exc
        final = out.read_text() if out.exists() else None
        if existing and not overwrite:
            assert final == KEEP and not won
        else:
            assert final in won, "the output is not one writer's whole content"
        assert sorted(p.name for p in folder.iterdir()) == ["alerts.csv"]

    check()


# --- changed prepared stores -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def store_entry(tmp_path_factory):
    from conftest import tiny_overrides
    from ids.config import compose
    from ids.data.prepare import clear_cache, prepare

    tmp = tmp_path_factory.mktemp("store")
    clear_cache()
    prepare(compose(tiny_overrides(tmp) + ["data.n_flows=2000"]).data, cache_dir=tmp / "cache")
    clear_cache()
    return next(p for p in (tmp / "cache").iterdir() if not p.name.startswith("."))


@budgets
def test_a_changed_store_is_never_used(budget, store_entry, tmp_path):
    """Any change to any file of a prepared store (a byte, a truncation, an append, a removal,
    the checksums themselves), with its mtime restored or not: opening it raises `Changed` or
    finds no store (it is prepared again); it never returns the changed data."""
    import os

    from ids.data import cache

    n = {"fast": 30, "slow": 300}[budget]
    names = sorted(cache.FILES) + [cache.CHECKSUMS]

    @_settings(n, deadline_ms=20_000)
    @given(name=st.sampled_from(names), kind=st.sampled_from(["flip", "truncate", "append",
                                                               "remove"]),
           where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255),
           restore_mtime=st.booleans())
    def check(name, kind, where, xor, restore_mtime) -> None:
        entry = tmp_path / "entry"
        shutil.rmtree(entry, ignore_errors=True)
        shutil.copytree(store_entry, entry)
        assert cache.load(entry, record=False) is not None  # the copy itself is sound
        path = entry / name
        st_before = os.stat(path)
        data = bytearray(path.read_bytes())
        at = int(where * len(data))
        if kind == "flip":
            data[at] ^= xor
        elif kind == "truncate":
            data = data[:at]
        elif kind == "append":
            data += bytes([xor])
        if kind == "remove":
            path.unlink()
        else:
            with open(path, "r+b") as fh:  # in place: the same inode
                fh.write(bytes(data))
                fh.truncate(len(data))
            if restore_mtime:
                os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
        try:
            loaded = cache.load(entry, record=False)
        except cache.Changed:
            return
        assert loaded is None, f"a store with {name} changed ({kind}) was used"

    check()
