"""The data pipeline: both layouts load, splits are disjoint, scaling sees train only, windows are
zero-copy views with the right rows, and every bad input stops with a DataError that says why."""

from __future__ import annotations

import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

from ids.config import compose
from ids.data.encoding import Preprocessor
from ids.data.flows import ID_COLUMNS, SPLITS, V1_FEATURES, DataError, load_frame, read_flows
from ids.data.prepare import clear_cache, prepare
from ids.data.splits import split_indices
from ids.data.windows import check_window, windows


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def cfg(*overrides: str):
    return compose(["data.n_flows=5000", "data.window=4", *overrides]).data


def flows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A small v1-layout frame with benign flows spread out (so every split has both classes)."""
    from ids.data.synthetic import generate

    return generate(n, seed, {"Benign": 1, "DoS": 1, "Reconnaissance": 2})


def file_cfg(path, *overrides: str):
    return compose(["data=nf_bot_iot", f"data.path={path}", "data.window=4", *overrides]).data


def write_csv(tmp_path, df: pd.DataFrame, name: str = "flows.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


# --- loading ---------------------------------------------------------------------------------

def test_v1_sample_loads(v1_sample):
    df = read_flows(v1_sample)
    assert len(df) == 50_000 and list(df.columns) == ID_COLUMNS + V1_FEATURES + [
        "Label", "Attack"]
    pre = Preprocessor().fit(df)
    assert pre.layout_ == "v1" and not set(pre.feature_names_) & set(ID_COLUMNS)
    assert prepare(file_cfg(v1_sample, "data.split=chunks")).info["layout"] == "v1"


def test_v2_sample_loads(v2_sample):
    df = read_flows(v2_sample)
    assert len(df) == 50_000 and "DNS_TTL_ANSWER" in df.columns
    p = prepare(file_cfg(v2_sample, "data.split=chunks"))
    assert p.info["layout"] == "v2" and p.info["n_flows"] == 50_000
    assert sum(n.startswith(("CLIENT_TCP_FLAGS.", "SERVER_TCP_FLAGS.")) for n in p.feature_names) == 16
    assert np.isfinite(p.train.X).all() and p.train.X.dtype == np.float32


def test_csv_gz_zip_parquet_give_the_same_frame(tmp_path):
    df = flows()
    ref = read_flows(write_csv(tmp_path, df))
    df.to_csv(tmp_path / "f.csv.gz", index=False)
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as zf:
        zf.writestr("NF-BoT-IoT/NF-BoT-IoT.csv", df.to_csv(index=False))
    df.to_parquet(tmp_path / "f.parquet")
    for name in ("f.csv.gz", "f.zip", "f.parquet"):
        pd.testing.assert_frame_equal(read_flows(tmp_path / name), ref)
    assert len(read_flows(tmp_path / "f.zip", max_rows=50)) == 50


def test_attack_column_optional_and_label_only_when_asked(tmp_path):
    df = flows()
    got = read_flows(write_csv(tmp_path, df.drop(columns="Attack")))
    assert set(got["Attack"]) == {"Attack", "Benign"}
    assert (got["Attack"].eq("Attack") == got["Label"].eq(1)).all()
    no_label = write_csv(tmp_path, df.drop(columns=["Label", "Attack"]), "new.csv")
    assert "Label" not in read_flows(no_label, require_label=False).columns
    with pytest.raises(DataError, match="'Label'.*missing"):
        read_flows(no_label)


def test_other_attack_names_are_kept(tmp_path):
    df = flows()
    df["Attack"] = np.where(df["Label"] == 1, "ransomware", "Benign")
    p = prepare(file_cfg(write_csv(tmp_path, df)))
    assert set(p.info["attack_counts"]) == {"ransomware", "Benign"}


# --- splits and scaling ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["contiguous", "chunks"])
def test_splits_are_disjoint_and_cover_every_flow(mode):
    c = cfg(f"data.split={mode}", "data.chunk_size=250")
    idx = split_indices(5000, c)
    rows = np.concatenate([idx[s] for s in SPLITS])
    assert np.array_equal(np.sort(rows), np.arange(5000))  # every row once: disjoint and covering
    for r in idx.values():
        assert (np.diff(r) > 0).all()  # flow order kept inside a split
    sizes = [len(idx[s]) / 5000 for s in SPLITS]
    assert np.allclose(sizes, [0.7, 0.15, 0.15], atol=0.03)
    p = prepare(c)
    assert not set(p.train.rows) & set(p.val.rows) and not set(p.val.rows) & set(p.test.rows)
    if mode == "contiguous":
        assert p.train.rows[-1] < p.val.rows[0] and p.val.rows[-1] < p.test.rows[0]
    else:
        for r in idx.values():  # whole chunks only
            assert (np.bincount(r // 250)[np.unique(r // 250)] == 250).all()
        other = split_indices(5000, cfg("data.split=chunks", "data.chunk_size=250", "seed=1"))
        assert not np.array_equal(other["test"], idx["test"])


def test_scaler_uses_the_training_split_only():
    p = prepare(cfg())
    raw = load_frame(cfg())
    pre = p.preprocessor
    train = np.log1p(raw.iloc[p.train.rows][pre.log_columns_].to_numpy(float))
    assert np.allclose(pre.log_mean_, train.mean(axis=0))
    assert np.allclose(pre.log_std_, train.std(axis=0))
    k = len(pre.log_columns_)
    assert np.allclose(p.train.X[:, :k].mean(axis=0), 0, atol=1e-4)
    assert not np.allclose(p.test.X[:, :k].mean(axis=0), 0, atol=1e-3)
    assert p.train.X.flags.c_contiguous and p.test.X.dtype == np.float32


def test_transform_scores_new_flows_and_pickles(tmp_path):
    df = flows()
    pre = Preprocessor(l7_top_k=2).fit(df)
    assert sum(n.startswith("L7_PROTO=") for n in pre.feature_names_) == 3  # top 2 + other
    X = pre.transform(df.drop(columns=["Label", "Attack"]))
    assert X.shape == (len(df), len(pre.feature_names_)) and X.flags.c_contiguous
    again = pickle.loads(pickle.dumps(pre)).transform(df)
    assert np.array_equal(X, again)
    flags = df["TCP_FLAGS"].to_numpy()
    assert np.array_equal(X[:, pre.feature_names_.index("TCP_FLAGS.SYN")], (flags >> 1) & 1)
    with pytest.raises(DataError, match="missing columns.*IN_BYTES"):
        pre.transform(df.drop(columns="IN_BYTES"))


def test_numeric_bins_are_piecewise_linear_on_train_quantiles():
    """data.numeric_bins=K: K features per numeric column, each in [0, 1], non-increasing along
    the bins, fitted on the training split only, and they survive the model file format."""
    from ids.data.encoding_state import from_state, state

    df = flows(2000)
    train, new = df.iloc[:1000], df.iloc[1000:]
    plain = Preprocessor().fit(train)
    pre = Preprocessor(numeric_bins=8).fit(train)
    k = len(pre.log_columns_)
    assert len(pre.feature_names_) == len(plain.feature_names_) + 8 * k
    X = pre.transform(new)
    assert np.array_equal(X[:, :k], plain.transform(new)[:, :k])  # the plain value stays
    bins = X[:, k: k + 8 * k].reshape(len(new), k, 8)
    assert bins.min() >= 0 and bins.max() <= 1
    assert (np.diff(bins, axis=2) <= 1e-6).all()  # a value fills its lower bins first
    col = pre.log_columns_.index("IN_BYTES")
    logv = np.log1p(train["IN_BYTES"].to_numpy(float))
    edges = pre.bin_edges_[col][~np.isnan(pre.bin_edges_[col])]
    assert edges[0] == logv.min() and edges[-1] == logv.max()  # train quantiles, not new flows
    top = new["IN_BYTES"].to_numpy(float) >= train["IN_BYTES"].max()
    assert (bins[top, col, len(edges) - 2] == 1).all()  # beyond train: the last bin is full
    assert (bins[:, col, len(edges) - 1:] == 0).all()  # merged (tied) bins stay 0
    again = from_state(*state(pre))
    assert np.array_equal(again.transform(new), X)
    assert prepare(cfg("data.numeric_bins=4")).train.X.shape[1] == \
        prepare(cfg()).train.X.shape[1] + 4 * k


def test_identifiers_dropped_by_default_kept_with_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = prepare(cfg()).feature_names
    assert not any(n.startswith(("IPV4_", "L4_")) for n in names)
    with pytest.warns(UserWarning, match="leak the label"):
        p = prepare(cfg("data.keep_identifiers=true"))
    assert {"L4_SRC_PORT", "L4_DST_PORT", "IPV4_SRC_ADDR.o4"} <= set(p.feature_names)


# --- windows ---------------------------------------------------------------------------------

def _root(a):
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def test_window_contents_padding_and_labels():
    p = prepare(cfg())
    s, T = p.val, 4
    w = s.windows(T)
    assert w.shape == (len(s.y), T, s.X.shape[1])  # exactly one window per flow
    for i in (0, 1, 2, 3, 500, len(s.y) - 1):
        lo = max(0, i - T + 1)
        assert np.array_equal(w[i, T - (i - lo + 1):], s.X[lo: i + 1])
        assert not w[i, : T - (i - lo + 1)].any()  # zero padding, nothing from train
        assert np.array_equal(w[i, -1], s.X[i])  # the last flow is the labelled one: y[i]
    assert np.array_equal(windows(np.eye(3, dtype=np.float32), 5)[0, :4], np.zeros((4, 3)))


def test_windows_are_cached_read_only_views():
    s = prepare(cfg()).train
    n, f = s.X.shape
    for T in (1, 4, 64):
        w = s.windows(T)
        base = _root(w)
        assert np.shares_memory(w, base) and base.nbytes == (n + T - 1) * f * 4  # no T copies
        assert not w.flags.writeable and s.windows(T) is w


def test_prepare_is_cached_without_the_window():
    a = prepare(cfg())
    assert prepare(cfg("data.window=7")) is a
    assert prepare(cfg("seed=1")) is not a
    clear_cache()
    b = prepare(cfg())
    assert b is not a and b.info["hash"] == a.info["hash"]


def test_prepare_accepts_the_dataclass_config():
    from ids.config import DataConfig

    p = prepare(DataConfig(n_flows=5000, window=4))
    assert p.info["hash"] == prepare(cfg()).info["hash"]  # same flows as the composed config
    assert p.split("test") is p.test and p.info["counts"]["test"]["benign"] > 0


# --- bad input -------------------------------------------------------------------------------

def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"not found.*UQ:62e6d80.*data=synthetic"):
        prepare(file_cfg(tmp_path / "NF-BoT-IoT.csv"))


def test_bad_file_kinds(tmp_path):
    (tmp_path / "f.txt").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="unknown file extension"):
        read_flows(tmp_path / "f.txt")
    with zipfile.ZipFile(tmp_path / "none.zip", "w") as zf:
        zf.writestr("readme.md", "x")
    with pytest.raises(DataError, match="holds 0 CSV files"):
        read_flows(tmp_path / "none.zip")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("a.csv", "x\n1\n")
        zf.writestr("b.csv", "x\n1\n")
    with pytest.raises(DataError, match="holds 2 CSV files"):
        read_flows(tmp_path / "two.zip")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_flows(tmp_path / "empty.csv")
    write_csv(tmp_path, flows().iloc[:0], "header.csv")
    with pytest.raises(DataError, match="no flows"):
        read_flows(tmp_path / "header.csv")


def test_missing_or_renamed_columns(tmp_path, v2_sample):
    df = flows().rename(columns={"IN_BYTES": "in_bytes"})
    with pytest.raises(DataError, match=r"missing columns \['IN_BYTES'\].*v1.*in_bytes"):
        read_flows(write_csv(tmp_path, df))
    v2 = pd.read_csv(v2_sample, nrows=100).drop(columns=["MIN_TTL"])
    with pytest.raises(DataError, match=r"\['MIN_TTL'\].*v2 layout"):
        read_flows(write_csv(tmp_path, v2, "v2.csv"))


@pytest.mark.parametrize("column,value,pattern", [
    ("IN_BYTES", "12kB", r"'IN_BYTES' must be numeric.*row 7.*'12kB'"),
    ("OUT_PKTS", np.nan, r"'OUT_PKTS' has 1 NaN"),
    ("L7_PROTO", np.inf, r"'L7_PROTO' has 0 NaN and 1 infinite"),
    ("Label", 2, r"'Label' must be 0 \(benign\) or 1.*\[2\]"),
])
def test_bad_values(tmp_path, column, value, pattern):
    df = flows().astype({column: object})
    df.loc[7, column] = value
    with pytest.raises(DataError, match=pattern):
        read_flows(write_csv(tmp_path, df))


def test_split_without_benign_flows(tmp_path):
    df = flows(1000)
    df.loc[700:, "Label"] = 1
    with pytest.raises(DataError, match=r"val split \(150 flows\) has no benign.*data.split=chunks"):
        prepare(file_cfg(write_csv(tmp_path, df)))


def test_window_out_of_range():
    with pytest.raises(DataError, match="data.window must be >= 1"):
        prepare(cfg("data.window=0"))
    with pytest.raises(DataError, match=r"data.window=751 .*val split \(750 flows\)"):
        prepare(cfg("data.window=751"))
    check_window(750, prepare(cfg()).sizes())


def test_bad_class_mix_and_source():
    with pytest.raises(DataError, match="unknown categories.*Worm"):
        prepare(cfg("+data.class_mix.Worm=1"))
    with pytest.raises(DataError, match="data.path is not set"):
        load_frame(compose(["data=nf_bot_iot", "data.path=null"]).data)
