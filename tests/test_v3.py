"""NF-v3 (55 columns: the v2 features, start and end times, inter-arrival statistics): read in
every format, validated like v1/v2, attack names normalised; v1 and v2 files prepare exactly
as before. Every file here is a few hundred flows written in tmp_path."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from ids.config import compose
from ids.data import synthetic, synthetic_v2
from ids.data.flows import (
    ATTACK,
    IAT_COLUMNS,
    TIME_COLUMNS,
    V3_FEATURES,
    DataError,
    attack_names,
    read_flows,
    validate_frame,
)
from ids.data.prepare import clear_cache, prepare, time_ranges
from ids.data.reader import FlowFile
from world import prepared_digest

V3_ORDER = TIME_COLUMNS + ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT"] + [
    c for c in V3_FEATURES] + ["Label", "Attack"]


@pytest.fixture(autouse=True)
def _fresh():
    clear_cache()
    yield
    clear_cache()


def v3_frame(n: int = 300, seed: int = 0, start: int = 1_556_000_000_000) -> pd.DataFrame:
    """`n` flows in the published v3 column order, times increasing, v3's lower-case names."""
    rng = np.random.default_rng(seed)
    v1 = synthetic.generate(n, seed, {"Benign": 1, "DoS": 1, "Reconnaissance": 1})
    cols = synthetic_v2.to_v2(v1, rng)
    t0 = start + np.cumsum(rng.integers(0, 50, n))
    cols["FLOW_START_MILLISECONDS"] = t0
    cols["FLOW_END_MILLISECONDS"] = t0 + np.minimum(cols["FLOW_DURATION_MILLISECONDS"], 10_000)
    for c in IAT_COLUMNS:
        cols[c] = rng.integers(0, 2000, n)
    lower = {"Benign": "Benign", "DoS": "dos", "Reconnaissance": "scanning"}
    cols["Attack"] = np.array([lower[a] for a in cols["Attack"]], dtype=object)
    return pd.DataFrame({c: cols[c] for c in V3_ORDER})


def write(df: pd.DataFrame, path) -> None:
    name = str(path)
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("NF-ToN-IoT-v3.csv", df.to_csv(index=False))
    elif name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip", ".parquet", ".csv.bz2",
                                    ".csv.xz"])
def test_a_v3_file_reads_the_same_whole_and_in_tiny_batches(suffix, tmp_path):
    df = v3_frame(120)
    path = tmp_path / f"flows{suffix}"
    write(df, path)
    whole = read_flows(path)
    tiny = read_flows(path, batch_rows=7)
    pd.testing.assert_frame_equal(whole, tiny)
    pd.testing.assert_frame_equal(whole, validate_frame(df))
    assert set(TIME_COLUMNS + IAT_COLUMNS) <= set(whole.columns)
    assert set(whole[ATTACK]) == {"Benign", "DoS", "Scanning"}  # dos, scanning normalised
    assert all(len(f) == 7 for f in list(FlowFile(path).batches(7))[:-1])


def test_v3_attack_names_are_normalised_and_the_mapping_is_kept(tmp_path, capsys):
    names, renamed = attack_names(np.array(["dos", "Benign", "ddos", "xss", "odd one"], object))
    assert list(names) == ["DoS", "Benign", "DDoS", "XSS", "odd one"]
    assert renamed == {"dos": "DoS", "ddos": "DDoS", "xss": "XSS"}
    path = tmp_path / "v3.csv"
    write(v3_frame(300), path)
    p = prepare(compose(["data=nf_bot_iot", f"data.path={path}", "data.window=3",
                         "data.order=file"]).data)
    assert p.info["layout"] == "v3"
    assert p.info["attack_renamed"] == {"dos": "DoS", "scanning": "Scanning"}
    assert "dos -> DoS" in capsys.readouterr().err
    names = p.feature_names
    assert "SRC_TO_DST_IAT_AVG" in names and "DNS_TTL_ANSWER" in names  # IATs are features
    assert not any(n.startswith(("FLOW_START", "FLOW_END", "IPV4", "L4_")) for n in names)


def test_v1_and_v2_names_are_never_renamed():
    v1 = synthetic.generate(50, 0, {"Benign": 1, "DoS": 1})
    v1["Attack"] = np.where(v1["Label"] == 1, "dos", "Benign")
    assert set(validate_frame(v1)["Attack"]) == {"dos", "Benign"}


@pytest.mark.parametrize("drop", ["FLOW_END_MILLISECONDS", "DST_TO_SRC_IAT_STDDEV"])
def test_a_v3_file_missing_a_column_is_one_line_naming_it(drop, tmp_path):
    path = tmp_path / "v3.csv"
    write(v3_frame(50).drop(columns=[drop]), path)
    with pytest.raises(DataError) as e:
        read_flows(path)
    assert drop in str(e.value) and "\n" not in str(e.value) and "v3" in str(e.value)


def test_a_v3_time_that_is_not_a_number_is_one_line(tmp_path):
    df = v3_frame(50).astype({"FLOW_START_MILLISECONDS": object})
    df.loc[7, "FLOW_START_MILLISECONDS"] = "2019-04-23 10:00"
    path = tmp_path / "v3.csv"
    write(df, path)
    with pytest.raises(DataError, match=r"FLOW_START_MILLISECONDS.*row 7") as e:
        read_flows(path)
    assert "\n" not in str(e.value)


def _digests(tmp) -> dict[str, tuple[str, str]]:
    """(the file digest, a sha1 of every prepared array) of small v1 and v2 files."""
    out = {}
    df = synthetic.generate(900, 5, {"Benign": 1, "DoS": 1, "Reconnaissance": 2})
    df.to_csv(tmp / "v1.csv", index=False)
    pd.DataFrame(synthetic_v2.to_v2(df, np.random.default_rng(1))).to_csv(tmp / "v2.csv",
                                                                          index=False)
    for name in ("v1", "v2"):
        for extra in ([], ["data.split=chunks", "data.chunk_size=50", "data.dedup=exact"]):
            clear_cache()
            cfg = compose(["data=nf_bot_iot", f"data.path={tmp}/{name}.csv", "data.window=4",
                           *extra]).data
            p = prepare(cfg, cache_dir=tmp / "cache", batch_rows=128)
            out[f"{name} {' '.join(extra)}".strip()] = (p.info["hash"], prepared_digest(p, 4))
    return out


def test_v1_and_v2_files_prepare_exactly_as_before_v3(tmp_path):
    """Digests taken with the code before NF-v3 was read (same pinned numpy/pandas): the file
    digest and every prepared array (X, y, rows, hashes, windows, categories, feature names)."""
    v1, v2 = "e91260aabff63459578b63e9cb5fbcd2773bd7e3", "857ab1824f82d2dce69ca2c51ddd572549fb56c3"
    chunks = "data.split=chunks data.chunk_size=50 data.dedup=exact"
    assert _digests(tmp_path) == {
        "v1": (v1, "0da1d9d5f3bd7e3f38a4f53863723aa78ceed33a"),
        f"v1 {chunks}": (v1, "06bdf6963bd2f08605ed7cd50f098b230112864a"),
        "v2": (v2, "e77391f92ef76b51f3708c1e642ea38b6630a73f"),
        f"v2 {chunks}": (v2, "02b059526f3c2d4c6bee18bc07bb7e2c781e9252")}


# --- time order and time splits ---------------------------------------------------------------

def _v3_cfg(path, *overrides: str):
    return compose(["data=nf_bot_iot", f"data.path={path}", "data.window=3", *overrides]).data


def test_flows_written_out_of_order_are_split_in_time(tmp_path):
    df = v3_frame(400, seed=2)
    df.loc[::7, "FLOW_START_MILLISECONDS"] = df["FLOW_START_MILLISECONDS"].iloc[0] + 1000  # ties
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = tmp_path / "v3.csv"
    write(shuffled, path)
    start = shuffled["FLOW_START_MILLISECONDS"].to_numpy()
    expect = np.argsort(start, kind="stable")  # file rows in time order, ties in file order
    for cache_dir in (None, tmp_path / "cache"):
        clear_cache()
        p = prepare(_v3_cfg(path), cache_dir=cache_dir, batch_rows=64)
        assert p.info["order"] == "time"
        rows = np.concatenate([p.split(s).rows for s in ("train", "val", "test")])
        np.testing.assert_array_equal(rows, expect)
        spans = p.info["time_range"]
        assert spans["train"]["last_ms"] <= spans["val"]["first_ms"]
        assert spans["val"]["last_ms"] <= spans["test"]["first_ms"]
        for s in ("train", "val", "test"):
            np.testing.assert_array_equal(p.context[s]["start"], start[p.split(s).rows])
            np.testing.assert_array_equal(p.split(s).y, shuffled["Label"].to_numpy()[
                p.split(s).rows])
        assert spans["train"]["first"].startswith("2019-04-23T")
        assert time_ranges(p.info).startswith("flows in time order (by start): train 2019-04-23T")
    clear_cache()
    by_file = prepare(_v3_cfg(path, "data.order=file"))
    assert by_file.info["order"] == "file"
    np.testing.assert_array_equal(by_file.train.rows, np.arange(len(by_file.train.rows)))


def test_time_order_needs_times_in_one_line(tmp_path):
    path = tmp_path / "v1.csv"
    synthetic.generate(400, 0, {"Benign": 1, "DoS": 1, "Reconnaissance": 2}).to_csv(path, index=False)
    with pytest.raises(DataError, match="data.order=time needs the flows' start times") as e:
        prepare(_v3_cfg(path, "data.order=time"))
    assert "\n" not in str(e.value)
    assert prepare(_v3_cfg(path)).info["order"] == "file"  # auto: file order without times


# --- the generator's v3 mode --------------------------------------------------------------------

def test_the_v3_generator_hides_an_attack_in_each_hosts_sequence():
    from ids.data import synthetic_v3

    df = synthetic_v3.generate(6000, 1)
    pd.testing.assert_frame_equal(df, synthetic_v3.generate(6000, 1))  # deterministic
    v = validate_frame(df)
    assert list(df.columns) == V3_ORDER and len(df) == 6000
    assert set(v[ATTACK]) == {"Benign", "Password", "DoS", "Scanning"}
    assert (np.diff(df["FLOW_START_MILLISECONDS"]) >= 0).all()
    auth = ((df["PROTOCOL"] == 6) & df["L7_PROTO"].isin([91.0, 92.0])
            & df["IN_PKTS"].between(8, 14) & (df["TCP_FLAGS"].isin([27, 31]))).to_numpy()
    pw = (df[ATTACK] == "password").to_numpy()
    assert auth[pw].all() and (auth & ~pw).sum() > pw.sum()  # benign logins look the same
    # A host's previous flow: another login for almost every guess, rarely for a user's login.
    src = df["IPV4_SRC_ADDR"].to_numpy()
    prev = pd.Series(np.arange(len(df))).groupby(src).shift(1).to_numpy()
    has = ~np.isnan(prev)
    after_auth = np.zeros(len(df), bool)
    after_auth[has] = auth[prev[has].astype(int)]
    assert after_auth[pw].mean() > 0.75 and after_auth[auth & ~pw].mean() < 0.3
    # ... while the previous row of the file is another host's for most guesses.
    assert (src[1:] == src[:-1])[pw[1:]].mean() < 0.3


def test_data_nf_v3_prepares_in_time_with_every_attack_in_every_split():
    p = prepare(compose(["data=nf_v3", "data.n_flows=3000", "data.window=4"]).data)
    assert p.info["layout"] == "v3" and p.info["order"] == "time"
    assert p.info["attack_renamed"] == {"dos": "DoS", "password": "Password",
                                        "scanning": "Scanning"}
    for s in ("train", "val", "test"):
        assert set(p.split(s).attack) == {"Benign", "Password", "DoS", "Scanning"}


# --- windows over a host's (or a pair's) previous flows -----------------------------------------

def _reference(split, context, by: str, T: int) -> np.ndarray:
    """Windows built by hand: for each flow, the T-1 flows of its group before it in this
    split (time order), zero rows where the group has fewer."""
    X = np.asarray(split.X)
    key = (context["src"] if by == "host"
           else context["src"].astype(np.int64) * 100_000 + context["dst"])
    out = np.zeros((len(X), T, X.shape[1]), X.dtype)
    seen: dict = {}
    for i in np.argsort(context["start"], kind="stable"):
        mine = seen.setdefault(int(key[i]), [])
        rows = (mine + [i])[-T:]
        out[i, T - len(rows):] = X[rows]
        mine.append(i)
    return out


@pytest.mark.parametrize("by", ["host", "pair"])
def test_grouped_windows_equal_a_hand_built_reference(by, tmp_path):
    from ids.data import synthetic_v3

    df = synthetic_v3.generate(900, 4)
    path = tmp_path / "v3.csv"
    write(df.sample(frac=1.0, random_state=1), path)  # out of order: time sorts it
    T = 3
    plain = prepare(_v3_cfg(path, f"data.window={T}"))
    for cache_dir in (None, tmp_path / "cache"):
        clear_cache()
        p = prepare(_v3_cfg(path, f"data.window={T}", f"data.window_by={by}"),
                    cache_dir=cache_dir, batch_rows=100)
        assert p.info["window_by"] == by
        for s in ("train", "val", "test"):
            split, ctx = p.split(s), p.context[s]
            np.testing.assert_array_equal(split.rows, plain.split(s).rows)  # same flows
            np.testing.assert_array_equal(split.y, plain.split(s).y)
            np.testing.assert_array_equal(split.X, plain.split(s).X)
            w = np.asarray(split.windows(T)[:])
            np.testing.assert_array_equal(w, _reference(split, ctx, by, T))
            assert not np.array_equal(w, np.asarray(plain.split(s).windows(T)))  # not the rows'
            d = split.distinct(T)  # distinct windows: the same ids <=> the same window
            np.testing.assert_array_equal(w[d.first][d.inverse], w)
            assert len(np.unique(w.reshape(len(w), -1), axis=0)) == len(d)
            dl = split.distinct(T, labelled=True)
            np.testing.assert_array_equal(split.y[dl.first][dl.inverse], split.y)


def test_host_windows_never_cross_a_split_and_pad_a_new_host(tmp_path):
    rows = []
    t = 1_556_000_000_000
    for i in range(60):  # host A in every split, host B only from the middle on
        host = "10.0.0.1" if i % 3 else "10.0.0.2" if i >= 30 else "10.0.0.1"
        rows.append((t + 1000 * i, host, i))
    df = v3_frame(60, seed=5)
    df["FLOW_START_MILLISECONDS"] = [r[0] for r in rows]
    df["IPV4_SRC_ADDR"] = [r[1] for r in rows]
    df["IN_BYTES"] = 1000 + np.arange(60) * 10  # every flow distinct
    df["Label"] = np.arange(60) % 2
    path = tmp_path / "v3.csv"
    write(df, path)
    p = prepare(_v3_cfg(path, "data.window=4", "data.window_by=host"))
    zero = np.zeros(len(p.feature_names), np.float32)
    for s in ("train", "val", "test"):
        split, src = p.split(s), p.context[s]["src"]
        w = np.asarray(split.windows(4)[:])
        X = np.asarray(split.X)
        for h in np.unique(src):
            first = int(np.flatnonzero(src == h)[0])  # this host's first flow in this split
            assert (w[first, :3] == zero).all() and (w[first, 3] == X[first]).all()
        assert all(any((X == row).all(axis=1)) or not row.any()  # only this split's flows
                   for row in w.reshape(-1, w.shape[2]))


def test_a_training_subset_keeps_its_host_windows(tmp_path):
    from ids.data import synthetic_v3

    path = tmp_path / "v3.csv"
    write(synthetic_v3.generate(900, 2), path)
    whole = prepare(_v3_cfg(path, "data.window_by=host"), cache_dir=tmp_path / "c")
    sub = prepare(_v3_cfg(path, "data.window_by=host", "data.max_train_flows=200"),
                  cache_dir=tmp_path / "c")
    picked = np.searchsorted(whole.train.rows, sub.train.rows)  # rows ascending in time here
    np.testing.assert_array_equal(whole.train.rows[picked], sub.train.rows)
    np.testing.assert_array_equal(np.asarray(sub.train.windows(3)[:]),
                                  np.asarray(whole.train.windows(3)[picked]))


def test_host_windows_need_addresses_and_times_in_one_line(tmp_path):
    path = tmp_path / "v1.csv"
    synthetic.generate(400, 0, {"Benign": 1, "DoS": 1, "Reconnaissance": 2}).to_csv(
        path, index=False)
    with pytest.raises(DataError, match="data.window_by=host needs each flow's start time") as e:
        prepare(_v3_cfg(path, "data.window_by=host"))
    assert "\n" not in str(e.value)


# --- the sweep preset ---------------------------------------------------------------------------

def test_the_nf_v3_sweep_preset_searches_what_a_window_sees():
    from ids.tuning.space import check_space, check_start_points

    cfg = compose(["data=nf_v3", "sweep=nf_v3"])
    check_space(cfg)
    points = check_start_points(cfg)
    assert set(cfg.sweep.params["data.window_by"].choices) == {"none", "host", "pair"}
    assert "data.window" in cfg.sweep.params
    assert {(p["data.window"], p["data.window_by"]) for p in points} == {
        (1, "none"), (10, "none"), (10, "host")}
    assert cfg.data.source == "synthetic_v3" and cfg.data.window_by == "host"


def test_folds_of_host_windows_group_each_block_on_its_own(tmp_path):
    """trainer.cv_folds with data.window_by=host: each block's windows are its hosts' previous
    flows within the block (the hand-built reference, block by block), never another block's."""
    from types import SimpleNamespace

    from ids.data import synthetic_v3
    from ids.data.folds import fold_bounds, joined, make_folds

    path = tmp_path / "v3.csv"
    write(synthetic_v3.generate(900, 4), path)
    T, k = 3, 3
    p = prepare(_v3_cfg(path, f"data.window={T}", "data.window_by=host"))
    seq = joined(p)
    X = np.asarray(seq.X)
    ctx = {c: np.concatenate([p.context[s][c] for s in ("train", "val")])
           for c in ("start", "src", "dst")}
    expected = np.zeros((len(X), T, X.shape[1]), X.dtype)
    for a, b in fold_bounds(len(X), k):  # each block on its own
        block = SimpleNamespace(X=X[a:b])
        expected[a:b] = _reference(block, {c: v[a:b] for c, v in ctx.items()}, "host", T)
    for fold in make_folds(p, k):
        rest = np.setdiff1d(np.arange(len(X)), fold.held)
        np.testing.assert_array_equal(np.asarray(fold.data.val.windows(T)[:]),
                                      expected[fold.held])
        np.testing.assert_array_equal(np.asarray(fold.data.train.windows(T)[:]), expected[rest])
        np.testing.assert_array_equal(fold.data.val.y, seq.y[fold.held])
    assert not np.array_equal(expected, np.asarray(seq.windows(T)[:]))  # not the rows' windows


def test_a_cross_validated_run_of_host_windows_trains_and_refuses_a_subset(tmp_path):
    from ids.config import ConfigError, validate
    from ids.experiment.train import train

    with pytest.raises(ConfigError, match="trainer.cv_folds") as e:
        validate(compose(["data=nf_v3", "trainer.cv_folds=3", "data.max_train_flows=100"]))
    assert "max_train_flows" in str(e.value) and "\n" not in str(e.value)
    cfg = compose(["data=nf_v3", "data.n_flows=2000", "data.window=3", "trainer.cv_folds=2",
                   "trainer.epochs=1", "trainer.baselines=false", "tracking.enabled=false",
                   "cache_dir=null", "quiet=true", "model.lstm_units=8", "model.filters=8"])
    summary = train(cfg)
    assert 0 < summary["value"] <= 1 and np.isfinite(summary["threshold"])


def test_the_run_logs_the_order_and_each_splits_period_as_tags(tmp_path, monkeypatch):
    from ids.tracking import store

    path = tmp_path / "v3.csv"
    write(v3_frame(300), path)
    info = prepare(_v3_cfg(path)).info
    tags = {}
    monkeypatch.setattr(store.mlflow, "set_tag", lambda k, v: tags.__setitem__(k, v))
    monkeypatch.setattr(store.mlflow, "log_dict", lambda *a, **k: None)
    monkeypatch.setattr(store.mlflow, "log_input", lambda *a, **k: None)
    store.log_data(info)
    assert tags["data.order"] == "time" and tags["data.layout"] == "v3"
    span = info["time_range"]["val"]
    assert tags["data.time_range.val"] == f"{span['first']} .. {span['last']}"
