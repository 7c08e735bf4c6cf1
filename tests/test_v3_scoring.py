"""Scoring with state: a model whose windows are grouped by host scores a flow the same whether
its file is scored whole, in chunks, streamed line by line or sent request by request over
HTTP; the per-host state is bounded; flows without the columns a grouped model needs are one
line. One untrained network (its weights are random: agreement is what is tested, not
accuracy) on a few hundred generated NF-v3 flows, no training."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from ids.artifact.hosts import HostState
from ids.artifact.scorer import SCORE, Scorer
from ids.config import compose
from ids.data import synthetic_v3
from ids.data.flows import DataError
from ids.data.prepare import clear_cache, prepare

T = 3


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """(a grouped Scorer with random weights, a CSV of 240 v3 flows, that file's frame)."""
    from ids.artifact import modelfile
    from ids.model.network import build_model
    from ids.model.runtime import setup_runtime

    tmp = tmp_path_factory.mktemp("grouped")
    cfg = compose(["data=nf_v3", "data.n_flows=1500", f"data.window={T}", "model.filters=8",
                   "model.lstm_units=8", "model.conv_layers=1", "trainer.eval_batch_size=64"])
    clear_cache()
    prepared = prepare(cfg.data)
    setup_runtime(cfg.trainer)
    net = build_model(len(prepared.feature_names), T, cfg.model)
    modelfile.write_npz(tmp / "weights.npz", {p.name: p.asnumpy() for p in net.get_parameters()})
    config = {"data": {"window_by": "host", "window": T}}
    scorer = Scorer(prepared.preprocessor, dict(cfg.model), T, 0.5, tmp / "weights.npz", 64,
                    config)
    flows = synthetic_v3.generate(240, 9)
    path = tmp / "flows.csv"
    flows.to_csv(path, index=False)
    clear_cache()
    return scorer, path, flows


def _file_scores(scorer, path, out, chunk: int) -> np.ndarray:
    from ids.serving.files import score_file

    score_file(scorer, path, out, chunk_size=chunk)
    return pd.read_csv(out)[SCORE].to_numpy()


def test_a_grouped_model_scores_the_same_whole_chunked_streamed_and_over_http(
        grouped, tmp_path, monkeypatch):
    from ids.serving import http, stream

    scorer, path, flows = grouped
    whole = _file_scores(scorer, path, tmp_path / "whole.csv", 10**6)
    chunked = _file_scores(scorer, path, tmp_path / "chunked.csv", 7)
    monkeypatch.setattr(stream, "READ_BYTES", 97)  # a read holds at most one line
    monkeypatch.setattr(stream, "MAX_BATCH_BYTES", 1)
    sink, sizes = io.StringIO(), []
    real = scorer.score_flows
    monkeypatch.setattr(scorer, "score_flows", lambda f, *a: sizes.append(len(f)) or real(f, *a))
    with open(path, "rb") as src:
        n, _ = stream.score_stream(scorer, src, sink)
    monkeypatch.undo()
    assert set(sizes) == {1}  # line by line
    streamed = pd.read_csv(io.StringIO(sink.getvalue()))[SCORE].to_numpy()
    scorer.hosts = scorer.host_state()  # the server's state: one request per flow
    header = flows.iloc[:0].to_csv(index=False)
    served = np.array([json.loads(http.predictions(scorer, http.parse_flows(
        (header + flows.iloc[[i]].to_csv(index=False, header=False)).encode(), "text/csv")))[
        "predictions"][0]["score"] for i in range(len(flows))])
    assert n == len(flows) == len(whole)
    for other in (chunked, streamed, served):
        np.testing.assert_allclose(other, whole, rtol=0, atol=1e-6)  # CPU LSTM: last bit
    # ... and the windows are the host's: the same flows scored over the previous rows differ
    ungrouped = scorer.score_matrix(scorer.transform(flows))
    assert not np.allclose(ungrouped, whole, atol=1e-4)


def test_the_host_state_is_bounded_and_a_dropped_host_starts_again_padded():
    state = HostState(rows=2, max_hosts=2)
    X = np.arange(1, 13, dtype=np.float32).reshape(6, 2)
    state.layout(X[:2], np.array(["a", "b"], object))
    state.layout(X[2:3], np.array(["c"], object))  # a is the least recently seen: dropped
    assert len(state) == 2 and "a" not in state and state.dropped == 1
    full, ends = state.layout(X[3:4], np.array(["a"], object))
    np.testing.assert_array_equal(full[ends[0] - 2: ends[0] + 1], [[0, 0], [0, 0], X[3]])
    full, ends = state.layout(X[4:6], np.array(["c", "c"], object))
    np.testing.assert_array_equal(full[ends[1] - 2: ends[1] + 1], [X[2], X[4], X[5]])
    with pytest.raises(ValueError, match="score_max_hosts must be >= 1"):
        HostState(2, 0)


def test_a_grouped_model_refuses_flows_without_addresses_or_times_in_one_line(grouped):
    from ids.serving import http

    scorer, _, flows = grouped
    for drop, says in ((["IPV4_SRC_ADDR", "IPV4_DST_ADDR"], "data.window_by=host"),
                       (["FLOW_START_MILLISECONDS"], "FLOW_START_MILLISECONDS")):
        body = flows.drop(columns=drop).iloc[:3].to_csv(index=False).encode()
        with pytest.raises(DataError, match=says) as e:
            scorer.scores(flows.drop(columns=drop).iloc[:3])
        assert "\n" not in str(e.value)
        with pytest.raises(http.BadRequest, match=says):
            http.predictions(scorer, http.parse_flows(body, "text/csv"))


def test_a_time_ordered_test_split_scored_from_the_file_equals_its_host_windows(grouped,
                                                                                tmp_path):
    """ids.evaluate reads the test rows of a file written out of time order and scores them
    through the model's own path (fresh host state): the same scores as the in-process
    test windows of training, flow by flow."""
    from ids.experiment.evaluate import _test_split
    from ids.model.feed import score

    scorer, _, _ = grouped
    path = tmp_path / "v3.csv"
    synthetic_v3.generate(1500, 0).sample(frac=1.0, random_state=2).to_csv(path, index=False)
    cfg = compose(["data=nf_v3", "data.source=nf_bot_iot", f"data.path={path}",
                   f"data.window={T}", "trainer.baselines=false", "cache_dir=null"])
    clear_cache()
    test = prepare(cfg.data).test
    assert (np.diff(test.rows) < 0).any()  # time order is not file order here
    own = scorer.preprocessor
    scorer.preprocessor = prepare(cfg.data).preprocessor  # this file's encoding, same width
    try:
        got = _test_split(cfg, scorer)
    finally:
        scorer.preprocessor = own
        clear_cache()
    np.testing.assert_array_equal(got["y"], test.y)
    np.testing.assert_allclose(got["scores"], score(scorer.model, test, T, 64, "off"), atol=1e-6)


def test_a_saved_grouped_model_loads_grouped(grouped, tmp_path):
    scorer, _, flows = grouped
    again = Scorer.load(scorer.save(tmp_path / "model"))
    assert again.window_by == "host" and scorer.window_by == "host"
    np.testing.assert_allclose(again.scores(flows.iloc[:50]),
                               scorer.score_flows(flows.iloc[:50], scorer.transform(flows.iloc[:50]),
                                                  state=scorer.host_state()), atol=1e-6)
