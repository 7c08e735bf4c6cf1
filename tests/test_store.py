"""The prepared store (ids.data.prepare + ids.data.cache): read in tiny batches, each distinct
flow kept once, memory-mapped, it gives exactly today's whole-frame preparation (splits,
encoding, hashes, copies accounting); training and scoring gather their windows from it; a
training subset is stratified and seeded; the synthetic v2 writer makes big files in chunks."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, tiny_overrides
from ids.config import compose
from ids.data import copies
from ids.data.distinct import distinct_windows
from ids.data.encoding import Preprocessor
from ids.data.flows import ATTACK, LABEL, SPLITS, V2_FEATURES, load_frame, load_rows, read_flows
from ids.data.prepare import clear_cache, prepare
from ids.data.splits import split_indices
from ids.data.synthetic_v2 import write_flows
from ids.data.windows import Windows


@pytest.fixture(autouse=True)
def _fresh():
    clear_cache()
    yield
    clear_cache()


def _cfg(*overrides: str):
    return compose(["data.n_flows=6000", "data.window=4", *overrides]).data


def _today(data_cfg) -> dict:
    """Today's preparation of the whole frame at once, spelled out: what the store must equal."""
    df = load_frame(data_cfg)
    keep = bool(data_cfg.keep_identifiers)
    hashes = copies.row_hashes(df, copies.feature_columns(df, keep))
    kept = np.arange(len(df))
    if data_cfg.dedup == "exact":
        key = pd.DataFrame({"h": hashes, "a": df[ATTACK].to_numpy(), "y": df[LABEL].to_numpy()})
        kept = np.flatnonzero(~key.duplicated(keep="first").to_numpy())
    idx = {name: kept[p] for name, p in split_indices(len(kept), data_cfg).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pre = Preprocessor(keep, int(data_cfg.l7_top_k), int(data_cfg.numeric_bins))
        pre.fit(df.iloc[idx["train"]])
    X = pre.transform(df)
    y = df[LABEL].to_numpy(np.float32)
    tr = idx["train"]
    seen = copies.TrainIndex(hashes[tr], y[tr])
    return {"df": df, "pre": pre, "idx": idx, "X": X, "y": y, "hashes": hashes,
            "attack": df[ATTACK].to_numpy(object),
            "overlap": {s: seen.stats(hashes[idx[s]], y[idx[s]]) for s in ("val", "test")}}


def _check_fit(pre: Preprocessor, df: pd.DataFrame) -> None:
    """The fitted values are numpy's on the training matrix (C order, as today), bit for bit."""
    logv = np.log1p(np.clip(np.ascontiguousarray(df[pre.log_columns_], np.float64), 0, None))
    std = logv.std(axis=0)
    assert np.array_equal(pre.log_mean_, logv.mean(axis=0))
    assert np.array_equal(pre.log_std_, np.where(std > 0, std, 1.0))
    vals, counts = np.unique(df["L7_PROTO"].to_numpy(np.float64), return_counts=True)
    assert pre.l7_values_ == vals[np.lexsort((vals, -counts))][: pre.l7_top_k].tolist()
    assert pre.protocols_ == np.unique(df["PROTOCOL"].to_numpy(np.float64)).tolist()
    if pre.numeric_bins:
        q = np.quantile(logv[:, 0], np.linspace(0, 1, pre.numeric_bins + 1))
        edges = pre.bin_edges_[0][np.isfinite(pre.bin_edges_[0])]
        assert np.array_equal(edges, np.unique(q))


VARIANTS = [[], ["data.dedup=exact"], ["data.split=chunks", "data.chunk_size=300"],
            ["data.numeric_bins=4"], ["data.keep_identifiers=true"]]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: " ".join(o) or "default")
def test_the_store_read_in_tiny_batches_is_todays_preparation(overrides, tmp_path):
    cfg = _cfg(*overrides)
    ref = _today(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        p = prepare(cfg, cache_dir=tmp_path / "cache", batch_rows=97)
    for name in SPLITS:
        s, rows = p.split(name), ref["idx"][name]
        assert isinstance(s.windows(4), Windows)  # memory-mapped: windows are gathered
        np.testing.assert_array_equal(s.rows, rows)
        np.testing.assert_array_equal(s.X, ref["X"][rows])
        np.testing.assert_array_equal(s.y, ref["y"][rows])
        np.testing.assert_array_equal(s.hashes, ref["hashes"][rows])
        assert list(s.attack) == list(ref["attack"][rows])
    _check_fit(p.preprocessor, ref["df"].iloc[ref["idx"]["train"]])
    assert p.info["overlap"] == ref["overlap"]
    assert p.info["dedup"]["kept"] == sum(len(r) for r in ref["idx"].values())
    digest = pd.util.hash_pandas_object(ref["df"], index=False).to_numpy().tobytes()
    assert p.info["hash"] == __import__("hashlib").sha1(digest).hexdigest()


def test_a_real_v2_file_gives_the_same_store_in_tiny_batches(v2_sample, tmp_path):
    cfg = compose(["data=nf_bot_iot", f"data.path={v2_sample}", "data.window=4"]).data
    whole = prepare(cfg)  # in memory, one batch
    clear_cache()
    tiny = prepare(cfg, cache_dir=tmp_path / "cache", batch_rows=4099)
    for name in SPLITS:
        a, b = whole.split(name), tiny.split(name)
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.hashes, b.hashes)
        idx = np.random.default_rng(0).integers(0, len(a.y), 300)
        np.testing.assert_array_equal(a.windows(4)[idx], b.windows(4)[idx])
        np.testing.assert_array_equal(a.windows(4)[5:900], b.windows(4)[5:900])
    assert whole.info == tiny.info
    df = read_flows(v2_sample)
    _check_fit(tiny.preprocessor, df.iloc[tiny.train.rows])
    rows = tiny.test.rows
    pd.testing.assert_frame_equal(load_rows(cfg, rows, batch_rows=999), df.iloc[rows])


def test_fitting_on_distinct_rows_in_chunks_is_fitting_on_the_frame():
    df = load_frame(_cfg())
    _, inverse = np.unique(copies.row_hashes(df, copies.feature_columns(df, False)),
                           return_inverse=True)
    first = pd.Series(np.arange(len(df))).groupby(inverse).first().to_numpy()
    table = df.iloc[first].reset_index(drop=True)  # each distinct flow once
    flows = np.arange(1000, 5000)
    a = Preprocessor(numeric_bins=8).fit(df.iloc[flows])
    b = Preprocessor(numeric_bins=8).fit_rows(table, inverse[flows], chunk_rows=7)
    for name in ("log_mean_", "log_std_", "bin_edges_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.l7_values_ == b.l7_values_ and a.feature_names_ == b.feature_names_


def test_training_subset_is_stratified_seeded_and_keeps_its_context(tmp_path):
    cfg = _cfg("data.max_train_flows=1500")
    full = prepare(_cfg(), cache_dir=tmp_path / "cache")
    sub = prepare(cfg, cache_dir=tmp_path / "cache")
    for name in ("val", "test"):  # stay whole
        np.testing.assert_array_equal(sub.split(name).rows, full.split(name).rows)
    tr, ft = sub.train, full.train
    assert len(tr.y) == 1500 and set(tr.rows) <= set(ft.rows)
    share = pd.Series(ft.attack).value_counts(normalize=True)
    got = pd.Series(tr.attack).value_counts()
    assert ((got - share * 1500).abs() <= 1).all()  # each category keeps its share
    at = np.searchsorted(ft.rows, tr.rows)
    np.testing.assert_array_equal(tr.windows(4)[:], ft.windows(4)[at])  # context kept
    np.testing.assert_array_equal(tr.X, ft.X[at])
    assert sub.info["train_subset"] == {"flows": 1500, "of": len(ft.y), "seed": 0,
                                        "stratified_by": "Attack"}
    assert sub.info["overlap"]["val"]["copies"] <= full.info["overlap"]["val"]["copies"]
    clear_cache()
    again = prepare(cfg)  # in memory: the same subset
    np.testing.assert_array_equal(again.train.rows, tr.rows)
    assert not np.array_equal(prepare(_cfg("data.max_train_flows=1500", "seed=1")).train.rows,
                              tr.rows)
    d = distinct_windows(*tr.sequence()[:1], 4, tr.y, ids=tr.sequence()[1],
                         ends=tr.sequence()[2])
    ref = distinct_windows(tr.windows(4)[:].reshape(len(tr.y), -1), 1, tr.y)
    np.testing.assert_array_equal(d.inverse, ref.inverse)


@pytest.mark.slow  # a second process
def test_another_process_opens_the_store_instead_of_preparing(tmp_path):
    over = tiny_overrides(tmp_path)
    cfg = compose(over)
    prepare(cfg.data, cache_dir=cfg.cache_dir)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert not (entry / "loads.log").exists()  # the builder itself is not a load
    code = ("import sys; from ids.config import compose; from ids.data.prepare import prepare; "
            "c = compose(sys.argv[1:]); p = prepare(c.data, cache_dir=c.cache_dir); "
            "import numpy as np; assert isinstance(p.test.rows, np.memmap)")
    subprocess.run([sys.executable, "-c", code, *over], cwd=ROOT, check=True)
    assert len((entry / "loads.log").read_text().split()) == 1
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1


@pytest.mark.slow  # two trainings (two graph compilations): ~7 s quiet
def test_training_from_the_store_is_training_in_memory(tmp_path):
    from ids.model.fit import fit
    from ids.model.runtime import setup_runtime

    cfg = compose(tiny_overrides(tmp_path) + ["model.dropout=0", "trainer.epochs=1",
                                              "data.n_flows=3000"])
    setup_runtime(cfg.trainer)
    a = fit(cfg, prepare(cfg.data), checkpoint_dir=tmp_path / "a")
    clear_cache()
    stored = prepare(cfg.data, cache_dir=cfg.cache_dir)
    assert isinstance(stored.train.windows(int(cfg.data.window)), Windows)
    b = fit(cfg, stored, checkpoint_dir=tmp_path / "b")
    assert a.history[0]["train/loss"] == b.history[0]["train/loss"]
    assert a.threshold == b.threshold
    np.testing.assert_array_equal(a.val_scores, b.val_scores)


def test_the_v2_writer_makes_a_big_file_in_chunks(tmp_path):
    path = tmp_path / "big.csv"
    size = write_flows(path, 25_000, seed=1, chunk=10_000)
    assert size == path.stat().st_size
    write_flows(tmp_path / "again.csv", 25_000, seed=1, chunk=10_000)
    assert path.read_bytes() == (tmp_path / "again.csv").read_bytes()  # deterministic
    df = read_flows(path)
    assert len(df) == 25_000 and set(V2_FEATURES) <= set(df.columns)
    distinct = len(df[V2_FEATURES].drop_duplicates()) / len(df)
    assert 0.02 < distinct < 0.3  # mostly copies, as in the real files
    p = prepare(compose(["data=nf_bot_iot", f"data.path={path}", "data.window=4"]).data)
    assert p.info["layout"] == "v2" and p.info["n_flows"] == 25_000
