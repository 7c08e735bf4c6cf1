"""The score memo: a window scored before is looked up exactly, within its memory bound, and a
file scored with it gives the scores and labels it gives without."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ids.artifact import memo as memo_module
from ids.artifact.memo import ScoreMemo
from ids.data import synthetic
from ids.data.distinct import distinct_windows
from ids.data.windows import windows
from ids.serving.files import score_file


class _Net:
    """Stands in for the network: records which windows it was asked to compute (the memo's own
    logic is under test here; the real network is in the file test below)."""

    def __init__(self, X: np.ndarray, T: int) -> None:
        self.w, self.calls = windows(X, T), []

    def __call__(self, ends: np.ndarray) -> np.ndarray:
        self.calls.append(len(ends))
        return self.w[ends].reshape(len(ends), -1).sum(axis=1).astype(np.float32)


def test_a_window_seen_before_is_looked_up_and_one_bit_apart_is_not():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    memo, net = ScoreMemo(1 << 20), _Net(X, 3)
    ends = np.arange(40)
    first = memo.scores(X, ends[:30], 3, net)
    again = memo.scores(X, ends[10:], 3, net)  # 20 seen, 10 new
    assert net.calls == [30, 10] and (memo.hits, memo.misses) == (20, 40)
    np.testing.assert_array_equal(again, net(ends[10:]))
    np.testing.assert_array_equal(first, net(ends[:30]))
    # The same windows elsewhere (another array, other places, zero padding included) hit ...
    Y = np.concatenate([rng.normal(size=(7, 4)).astype(np.float32), X[3:9]])
    memo.scores(Y, np.array([12]), 3, _Net(Y, 3))  # rows X6..X8: the window ending at X8
    assert memo.hits == 21
    zeros = np.zeros((2, 4), np.float32)
    net_z = _Net(zeros, 3)
    memo.scores(zeros, np.array([0, 1]), 3, net_z)  # windows of zero rows and padding: new
    memo.scores(zeros, np.array([1]), 3, net_z)
    assert net_z.calls == [2] and memo.hits == 22
    # ... and a window one bit apart (-0.0 against 0.0) is another window.
    W = zeros.copy()
    W[1, 2] = -0.0
    net_w = _Net(W, 3)
    memo.scores(W, np.array([1]), 3, net_w)
    assert net_w.calls == [1] and memo.misses == 43


def test_a_hash_only_proposes_rows_and_windows_are_compared(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    net = _Net(X, 2)
    monkeypatch.setattr(memo_module, "mix", lambda keys: np.zeros(len(keys), np.uint64))
    memo = ScoreMemo(1 << 20)  # every window "collides": the stored row ids decide
    memo.scores(X, np.arange(6), 2, net)
    out = memo.scores(X, np.arange(6, 12), 2, net)
    np.testing.assert_array_equal(out, net(np.arange(6, 12)))  # never another window's score
    assert memo.hits == 0
    monkeypatch.setattr(memo_module, "_row_hashes", lambda bits: np.zeros(len(bits), np.uint64))
    memo = ScoreMemo(1 << 20)  # every row "collides": no ids, every window computed
    np.testing.assert_array_equal(memo.scores(X, np.arange(12), 2, net), net(np.arange(12)))
    assert memo.hits == 0 and memo.misses == 12


def test_the_memo_stays_within_its_bound_and_forgets_the_oldest():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    net = _Net(X, 4)
    memo = ScoreMemo(16_000)  # a quarter for rows (~30 of them), the rest for ~80 windows
    memo.scores(X[:10], np.arange(10), 4, net)
    rows, cap = len(memo._rows), len(memo._key)
    held = memo._rows.nbytes + memo._key.nbytes + memo._hash.nbytes + memo._score.nbytes
    assert held + (rows + cap) * 120 <= 16_000 and 20 < rows < 40 and 40 < cap < 100
    assert memo._n_rows == 11  # the zero row and 10 rows
    memo.scores(X[:rows - 1], np.arange(rows - 1), 4, net)  # fills the row table exactly
    assert memo._n_rows == rows and memo.hits == 10
    memo.scores(X[:rows - 1], np.arange(rows - 1), 4, net)
    assert memo.hits == 10 + rows - 1
    memo.scores(X[100:110], np.arange(10), 4, net)  # new rows, no room: all is forgotten first
    assert len(memo._slot) == 10 and memo._n_rows == 11 and memo.hits == 10 + rows - 1
    # Few distinct rows, more distinct windows than fit: the oldest make room.
    Z = rng.normal(size=(20, 8)).astype(np.float32)[rng.integers(0, 20, 300)]
    ends = distinct_windows(Z, 4).first[: cap + 20]
    zn = _Net(Z, 4)
    memo.scores(Z, ends, 4, zn)
    assert len(memo._slot) == cap
    memo.scores(Z, ends, 4, zn)  # the first 20 were forgotten, the other windows hit
    assert zn.calls == [cap + 20, 20]
    tiny = ScoreMemo(100)  # no room for a window: computed, nothing kept
    assert tiny.scores(X, np.arange(3), 4, net).shape == (3,) and tiny._key is None


def test_a_file_scored_with_the_memo_agrees_with_one_scored_without(tmp_path, tiny_model):
    """3,000 flows twice in one file, read in chunks of 700: with the memo each distinct window
    of the whole file is computed once (the second copy is looked up, chunk borders and all),
    and the output has the labels of a scorer that keeps nothing, its scores within 1e-6."""
    _, scorer, cfg = tiny_model
    flows = synthetic.generate(3000, 11, dict(cfg.data.class_mix))
    path = tmp_path / "twice.csv"
    pd.concat([flows] * 2).to_csv(path, index=False)
    memo = scorer.memo
    try:
        scorer.memo = ScoreMemo(0)
        assert score_file(scorer, path, tmp_path / "without.csv", 700)[0] == 6000
        scorer.memo = kept = ScoreMemo()
        assert score_file(scorer, path, tmp_path / "with.csv", 700)[0] == 6000
    finally:
        scorer.memo = memo
    with_, without = pd.read_csv(tmp_path / "with.csv"), pd.read_csv(tmp_path / "without.csv")
    assert (with_["label"] == without["label"]).all()
    np.testing.assert_allclose(with_["score"], without["score"], atol=1e-6)
    X = scorer.transform(pd.concat([flows] * 2, ignore_index=True))
    assert kept.misses == len(distinct_windows(X, scorer.window)) and kept.hits >= 1000
