"""The score memo: a window scored before is looked up exactly, within its memory bound, and a
file scored with it gives the scores and labels it gives without."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ids.artifact.memo import ScoreMemo, window_hashes
from ids.data import synthetic
from ids.data.distinct import distinct_windows
from ids.data.windows import windows
from ids.serving.files import score_file


class _Net:
    """A stand-in network that records what it was asked to compute (the memo's own logic is
    under test here; the real network is in the file test below)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, w: np.ndarray) -> np.ndarray:
        self.calls.append(len(w))
        return w.reshape(len(w), -1).sum(axis=1).astype(np.float32)


def _windows(X: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(windows(X, T)), window_hashes(X, T, np.arange(len(X)))


def test_a_window_seen_before_is_looked_up_and_one_bit_apart_is_not():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    w, h = _windows(X, 3)
    memo, net = ScoreMemo(1 << 20), _Net()
    first = memo.scores(w[:30], lambda: h[:30], net)
    again = memo.scores(w[10:], lambda: h[10:], net)  # 20 stored, 10 new
    assert net.calls == [30, 10] and (memo.hits, memo.misses) == (20, 40)
    np.testing.assert_array_equal(again, net(w[10:]))
    np.testing.assert_array_equal(first, net(w[:30]))
    # The same window elsewhere (another array, another place) has the same hash...
    Y = np.concatenate([rng.normal(size=(7, 5)).astype(np.float32), X[3:9]])
    assert window_hashes(Y, 3, np.array([12]))[0] == h[8]
    # ... and a window one bit apart (0.0 against -0.0) is another window, its hash too.
    Z = X.copy()
    Z[5, 2] = 0.0
    W = Z.copy()
    W[5, 2] = -0.0
    hz, hw = window_hashes(Z, 3, np.array([6])), window_hashes(W, 3, np.array([6]))
    assert hz[0] != hw[0]
    memo.scores(np.ascontiguousarray(windows(Z, 3)[[6]]), lambda: hz, net)
    assert net.calls[-1] == 1
    memo.scores(np.ascontiguousarray(windows(W, 3)[[6]]), lambda: hw, net)
    assert net.calls[-1] == 1 and memo.misses == 42


def test_a_hash_only_proposes_the_stored_window_is_compared():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 2, 3)).astype(np.float32)
    same = np.zeros(6, np.uint64)  # every window "collides"
    memo, net = ScoreMemo(1 << 20), _Net()
    memo.scores(w[:3], lambda: same[:3], net)
    out = memo.scores(w[3:], lambda: same[3:], net)
    np.testing.assert_array_equal(out, net(w[3:]))  # computed, never another window's score
    assert memo.hits == 0


def test_the_memo_stays_within_its_bound_and_forgets_the_oldest():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(50, 4, 8)).astype(np.float32)
    h = np.arange(50, dtype=np.uint64) * np.uint64(7919)  # any distinct hashes will do
    per_window = 4 * 4 * 8 + 12 + 120
    memo, net = ScoreMemo(10 * per_window), _Net()
    memo.scores(w[:8], lambda: h[:8], net)
    memo.scores(w[8:14], lambda: h[8:14], net)  # 14 > 10: windows 0-3 make room
    assert len(memo._slot) == 10 and memo._win.nbytes + memo._hash.nbytes < 10 * per_window
    memo.scores(w[4:14], lambda: h[4:14], net)
    assert net.calls == [8, 6] and memo.hits == 10
    memo.scores(w[:4], lambda: h[:4], net)
    assert net.calls[-1] == 4 and len(memo._slot) == 10
    memo.scores(w[30:50], lambda: h[30:50], net)  # more new windows than fit: the last ones
    assert len(memo._slot) == 10
    memo.scores(w[40:50], lambda: h[40:50], net)
    assert net.calls[-1] == 20 and memo.hits == 20
    assert ScoreMemo(10).scores(w[:3], lambda: h[:3], net).shape == (3,)  # no room: computed


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
