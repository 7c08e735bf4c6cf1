"""The time since a host's previous flow (`data.time_gap=true`, issue 39): `HOST_GAP_MS` and
`HOST_FIRST` computed in file order across batches (out of time order: said, 0 where a host's
flow starts before its previous one), refused without the NF-v3 columns, encoded like every counter into the prepared store; a model trained with them
scores a file the same whole, in chunks, line by line and request by request, its state
bounded by score_max_hosts. Files are a few hundred flows written in tmp_path; one tiny real
training (1 epoch, 1,500 generated flows) serves the scoring tests."""

from __future__ import annotations

import copy
import io
import json
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
from test_v3 import v3_frame, write

from ids.artifact.hosts import HostState
from ids.artifact.scorer import SCORE, Scorer
from ids.config import ConfigError, compose, validate
from ids.data import synthetic, synthetic_v2, synthetic_v3
from ids.data.flows import (
    GAP_COLUMNS,
    IAT_COLUMNS,
    TIME_COLUMNS,
    DataError,
)
from ids.data.gaps import host_gaps, load_rows, read_flows
from ids.data.prepare import _cache_key, clear_cache, prepare
from world import prepared_digest

GAP, FIRST = GAP_COLUMNS
T = 3


@pytest.fixture(autouse=True)
def _fresh():
    clear_cache()
    yield
    clear_cache()


def _reference(start, src) -> tuple[np.ndarray, np.ndarray]:
    """The two columns by hand: one flow after the other, a dict of each host's last start."""
    last, gap, first = {}, [], []
    for t, h in zip(start, src, strict=True):
        gap.append(int(t) - last[h] if h in last else 0)
        first.append(int(h not in last))
        last[h] = int(t)
    return np.array(gap), np.array(first)


# --- the function -------------------------------------------------------------------------------

def test_host_gaps_by_hand_and_the_same_in_batches_of_1_3_and_all():
    start = np.array([100, 105, 130, 130, 170, 200, 260, 300])
    src = np.array(["a", "b", "a", "c", "b", "a", "c", "a"], object)
    gap = [0, 0, 30, 0, 65, 70, 130, 100]  # a: 100 130 200 300; b: 105 170; c: 130 260
    first = [1, 1, 0, 1, 0, 0, 0, 0]
    for size in (1, 3, len(start)):
        last: dict = OrderedDict()
        parts = [host_gaps(start[i: i + size], src[i: i + size], last)
                 for i in range(0, len(start), size)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), gap)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), first)
        assert dict(last) == {"a": 300, "b": 170, "c": 260}
        assert list(last) == ["b", "c", "a"]  # least recently seen first
    last = {"a": 40}  # a host seen before this input: measured from its last start
    assert [x.tolist() for x in host_gaps([50, 60], ["a", "z"], last)] == [[10, 0], [0, 1]]


def test_the_bound_on_hosts_drops_the_least_recent_and_it_starts_again_first():
    state = HostState(rows=0, max_hosts=2)

    def flows(t, hosts):
        return pd.DataFrame({"FLOW_START_MILLISECONDS": t, "IPV4_SRC_ADDR": hosts})

    state.gaps(flows([10, 20], ["a", "b"]))
    out = state.gaps(flows([30], ["c"]))  # a is the least recently seen: dropped
    assert list(state.starts) == ["b", "c"] and state.starts_dropped == 1
    assert out[FIRST].tolist() == [1]
    out = state.gaps(flows([45, 50], ["b", "a"]))
    assert out[GAP].tolist() == [25, 0] and out[FIRST].tolist() == [0, 1]  # a: first again
    assert len(state.starts) == 2 and "c" not in state.starts


# --- reading and preparing ----------------------------------------------------------------------

def _hosts_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """v3 flows in time order from 5 interleaved hosts, every flow distinct."""
    df = v3_frame(n, seed=seed)
    rng = np.random.default_rng(seed)
    df["IPV4_SRC_ADDR"] = rng.choice([f"10.0.0.{i}" for i in range(1, 6)], n)
    df["IN_BYTES"] = 1000 + np.arange(n)
    return df


def _cfg(path, *extra: str):
    return compose(["data=nf_bot_iot", f"data.path={path}", f"data.window={T}", *extra]).data


def _raw(prepared, split: str, column: str) -> np.ndarray:
    """A split's raw values of `column`, decoded from its standardised log1p encoding."""
    pre = prepared.preprocessor
    j = pre.log_columns_.index(column)
    x = np.asarray(prepared.split(split).X)[:, prepared.feature_names.index(column)]
    return np.expm1(x.astype(np.float64) * pre.log_std_[j] + pre.log_mean_[j])


def test_a_v3_file_prepared_with_time_gaps_holds_the_hand_reference(tmp_path):
    df = _hosts_frame()
    path = tmp_path / "v3.csv"
    write(df, path)
    gap, first = _reference(df["FLOW_START_MILLISECONDS"], df["IPV4_SRC_ADDR"])
    assert first.sum() == 5 and (gap > 0).sum() > 200
    read = read_flows(path, time_gap=True)
    np.testing.assert_array_equal(read[GAP], gap)
    np.testing.assert_array_equal(read[FIRST], first)
    for cache_dir in (None, tmp_path / "cache"):
        clear_cache()
        p = prepare(_cfg(path, "data.time_gap=true"), cache_dir=cache_dir, batch_rows=64)
        assert p.feature_names.count(GAP) == 1 and p.feature_names.count(FIRST) == 1
        for s in ("train", "val", "test"):
            rows = p.split(s).rows  # the file is in time order: rows ascending
            np.testing.assert_allclose(_raw(p, s, GAP), gap[rows], rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(_raw(p, s, FIRST), first[rows], atol=1e-4)
    # ids.evaluate reads the test rows with the gaps of the whole file (across the split)
    test = load_rows(_cfg(path, "data.time_gap=true"), p.test.rows, batch_rows=50)
    np.testing.assert_array_equal(test[GAP], gap[p.test.rows])
    assert test[FIRST].sum() == 0  # every host has flows before the test split
    clear_cache()
    plain = prepare(_cfg(path), cache_dir=tmp_path / "cache", batch_rows=64)
    assert len(plain.feature_names) == len(p.feature_names) - 2 and GAP not in plain.feature_names
    assert plain.info["hash"] == p.info["hash"]  # the file's digest, whatever the settings
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one store each
    assert (_cache_key(_cfg(path, "data.time_gap=true"), store=True)
            != _cache_key(_cfg(path), store=True))


def test_without_time_gaps_a_v3_file_prepares_exactly_as_before(tmp_path):
    """Digests taken with the code before data.time_gap existed: the file digest and every
    prepared array (X, y, rows, hashes, windows, categories, feature names)."""
    synthetic_v3.generate(900, 3).to_csv(tmp_path / "v3.csv", index=False)
    out = {}
    for extra in ([], ["data.window_by=host", "data.dedup=exact"]):
        clear_cache()
        p = prepare(_cfg(tmp_path / "v3.csv", "data.window=4", *extra),
                    cache_dir=tmp_path / "cache", batch_rows=128)
        out[" ".join(extra)] = (p.info["hash"], prepared_digest(p, 4))
    v3 = "11575db17864b251bef5d20e966cced75e08d48c"
    assert out == {"": (v3, "42ec76eeda2111876ced1e660ceef346e91ac9da"),
                   "data.window_by=host data.dedup=exact": (
                       v3, "69baeed560f63e6ec81b6c95bb72b3f91f2b13b8")}


def test_generated_v3_flows_get_the_gaps_of_the_same_function():
    cfg = compose(["data=nf_v3", "data.n_flows=1500", f"data.window={T}",
                   "data.time_gap=true"]).data
    p = prepare(cfg)
    df = synthetic_v3.generate(1500, int(cfg.seed))
    gap, first = _reference(df["FLOW_START_MILLISECONDS"], df["IPV4_SRC_ADDR"])
    for s in ("train", "test"):
        rows = p.split(s).rows
        np.testing.assert_allclose(_raw(p, s, GAP), gap[rows], rtol=1e-4, atol=1e-3)
    test = load_rows(cfg, p.test.rows)
    np.testing.assert_array_equal(test[GAP], gap[p.test.rows])
    np.testing.assert_array_equal(test[FIRST], first[p.test.rows])


# --- refusals -----------------------------------------------------------------------------------

def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_time_gaps_of_a_file_without_times_or_addresses_are_one_line(layout, tmp_path):
    df = synthetic.generate(400, 0, {"Benign": 1, "DoS": 1, "Reconnaissance": 2})
    if layout == "v2":
        df = pd.DataFrame(synthetic_v2.to_v2(df, np.random.default_rng(0)))
    path = tmp_path / f"{layout}.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        prepare(_cfg(path, "data.time_gap=true"), cache_dir=tmp_path / "cache")
    text = _one_line(e)
    assert str(path) in text and "FLOW_START_MILLISECONDS" in text
    assert "data.time_gap needs FLOW_START_MILLISECONDS and IPV4_SRC_ADDR" in text
    assert "data.time_gap=false" in text
    assert not list((tmp_path / "cache").glob("*/table.npy"))  # no store was made
    with pytest.raises(ConfigError, match="data.time_gap") as e:  # generated v1: the settings
        validate(compose(["data.time_gap=true"]))
    _one_line(e)


def test_time_gaps_of_a_file_out_of_time_order_are_measured_in_file_order_and_said(tmp_path,
                                                                                   capsys):
    """A flow that starts before the flow above it: gaps in file order, as a scorer measures
    them (0 where a host's flow starts before its previous one); the note names the first row,
    the store's info counts them; evaluate's reader measures the same."""
    df = _hosts_frame(300)
    src = df["IPV4_SRC_ADDR"].to_numpy()
    i = next(k for k in range(58, 300) if src[k] == src[57])  # host of row 57, its next flow
    df.loc[i, "FLOW_START_MILLISECONDS"] = df.loc[57, "FLOW_START_MILLISECONDS"] - 5
    path = tmp_path / "v3.csv"
    write(df, path)
    p = prepare(_cfg(path, "data.time_gap=true"), batch_rows=16)
    err = capsys.readouterr().err
    assert "flows start before the flow above them" in err and "(the first at row" in err
    assert p.info["time_gap_out_of_order"]["flows"] >= 1
    flows = read_flows(path, time_gap=True)
    assert flows.loc[i, GAP_COLUMNS[0]] == 0 and flows.loc[i, GAP_COLUMNS[1]] == 0  # before its previous
    gap, first = host_gaps(df["FLOW_START_MILLISECONDS"], src, {})
    np.testing.assert_array_equal(flows[GAP_COLUMNS[0]], gap)
    np.testing.assert_array_equal(flows[GAP_COLUMNS[1]], first)
    assert prepare(_cfg(path)).info["order"] == "time"  # without gaps: sorted, as ever


# --- scoring ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """({window_by: Scorer} of one tiny model trained with data.time_gap=true (saved and loaded
    back: what it knows comes from its logged config), the training config, a CSV of 120
    generated v3 flows, that file's frame)."""
    from ids.model.fit import fit
    from ids.model.runtime import setup_runtime
    from ids.tracking.store import model_config

    tmp = tmp_path_factory.mktemp("gaps")
    cfg = compose(["data=nf_v3", "data.n_flows=1500", f"data.window={T}", "data.time_gap=true",
                   "model.filters=8", "model.lstm_units=8", "model.conv_layers=1",
                   "trainer.epochs=1", "trainer.batch_size=128", "trainer.eval_batch_size=64",
                   "trainer.baselines=false", "cache_dir=null", "tracking.enabled=false"])
    clear_cache()
    prepared = prepare(cfg.data)
    setup_runtime(cfg.trainer)
    result = fit(cfg, prepared, checkpoint_dir=str(tmp / "ckpt"))
    saved = Scorer(prepared.preprocessor, dict(cfg.model), T, float(result.threshold),
                   result.checkpoint, 64, model_config(cfg)).save(tmp / "model")
    scorers = {"host": Scorer.load(saved)}
    for by in ("none", "pair"):  # the same network over the rows or the pairs
        config = copy.deepcopy(scorers["host"].config)
        config["data"]["window_by"] = by
        s = scorers["host"]
        scorers[by] = Scorer(s.preprocessor, s.model_cfg, T, s.threshold, saved / "weights.npz",
                             64, config)
    flows = synthetic_v3.generate(120, 9)
    path = tmp / "flows.csv"
    flows.to_csv(path, index=False)
    clear_cache()
    return scorers, cfg, path, flows


def _file_scores(scorer, path, out, chunk: int, max_hosts: int = 50_000) -> np.ndarray:
    from ids.serving.files import score_file

    score_file(scorer, path, out, chunk_size=chunk, max_hosts=max_hosts)
    return pd.read_csv(out)[SCORE].to_numpy()


def _served(scorer, flows: pd.DataFrame, max_hosts: int = 50_000, per: int = 1) -> np.ndarray:
    """Scores of requests of `per` flows each, through the server's parsing and answer."""
    from ids.serving import http

    scorer.hosts = scorer.host_state(max_hosts)  # what create_app sets
    out = []
    for lo in range(0, len(flows), per):
        body = flows.iloc[lo: lo + per].to_csv(index=False).encode()
        answer = json.loads(http.predictions(scorer, http.parse_flows(body, "text/csv")))
        out += [p["score"] for p in answer["predictions"]]
    return np.array(out)


@pytest.mark.parametrize("by", ["none", "host", "pair"])
def test_a_time_gap_model_scores_the_same_whole_chunked_streamed_and_over_http(
        trained, by, tmp_path, monkeypatch):
    from ids.serving import stream

    scorers, _, path, flows = trained
    scorer = scorers[by]
    assert scorer.time_gap and scorer.window_by == by and scorer.stateful
    whole = _file_scores(scorer, path, tmp_path / "whole.csv", 10**6)
    chunked = _file_scores(scorer, path, tmp_path / "chunked.csv", 7)
    monkeypatch.setattr(stream, "READ_BYTES", 97)  # a read holds at most one line
    monkeypatch.setattr(stream, "MAX_BATCH_BYTES", 1)
    sink = io.StringIO()
    with open(path, "rb") as src:
        n, _ = stream.score_stream(scorer, src, sink)
    monkeypatch.undo()
    streamed = pd.read_csv(io.StringIO(sink.getvalue()))[SCORE].to_numpy()
    served = _served(scorer, flows)  # one request per flow
    # The gaps are carried: with a state of one host, most flows are a host's "first" again.
    forgetful = _served(scorer, flows, max_hosts=1)
    assert len(scorer.hosts.starts) == 1 and scorer.hosts.starts_dropped > 50
    assert not np.allclose(forgetful, served, atol=1e-4)
    bounded = _file_scores(scorer, path, tmp_path / "bounded.csv", 1, max_hosts=1)
    assert not np.allclose(bounded, whole, atol=1e-4)
    if by == "none":  # a request's windows over the rows hold its own rows only (as ever)
        served = _served(scorer, flows, per=len(flows))
    else:
        np.testing.assert_allclose(bounded, forgetful, rtol=0, atol=1e-6)
    assert n == len(flows) == len(whole)
    for other in (chunked, streamed, served):
        np.testing.assert_allclose(other, whole, rtol=0, atol=1e-6)


def test_a_time_gap_model_refuses_flows_without_times_or_addresses_in_one_line(trained):
    from ids.serving import http

    scorers, _, _, flows = trained
    scorer = scorers["none"]  # no grouping: only the gaps need the columns
    v2 = flows.drop(columns=TIME_COLUMNS + IAT_COLUMNS)
    for bad, says in ((flows.drop(columns=["IPV4_SRC_ADDR"]), "data.time_gap=true"),
                      (flows.drop(columns=["FLOW_START_MILLISECONDS"]), "FLOW_START_MILLISECONDS"),
                      (v2, "data.time_gap=true")):
        scorer.hosts = scorer.host_state()
        with pytest.raises(DataError, match=says) as e:
            scorer.scores(bad.iloc[:3])
        _one_line(e)
        body = bad.iloc[:3].to_csv(index=False).encode()
        with pytest.raises(http.BadRequest, match=says):
            http.predictions(scorer, http.parse_flows(body, "text/csv"))


def test_the_test_split_scored_from_the_file_equals_training_s_test_windows(trained, tmp_path):
    """ids.evaluate reads the test rows with their gaps measured over the whole file (across
    the split boundary, as training measured them): the same scores as the in-process test
    windows, flow by flow."""
    from ids.experiment.evaluate import _test_split
    from ids.model.feed import score

    scorers, cfg, _, _ = trained
    scorer = scorers["host"]
    path = tmp_path / "v3.csv"
    synthetic_v3.generate(1500, 0).to_csv(path, index=False)
    cfg = compose(["data=nf_v3", "data.source=nf_bot_iot", f"data.path={path}",
                   f"data.window={T}", "data.time_gap=true", "trainer.baselines=false",
                   "cache_dir=null"])
    test = prepare(cfg.data).test
    got = _test_split(cfg, scorer)
    np.testing.assert_array_equal(got["y"], test.y)
    np.testing.assert_allclose(got["scores"], score(scorer.model, test, T, 64, "off"), atol=1e-6)
