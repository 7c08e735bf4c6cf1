"""Distinct windows (ids.data.distinct): exact ids on what the model sees, counts that add up."""

from __future__ import annotations

import numpy as np
import pytest

from ids.data.distinct import distinct_windows, row_ids
from ids.data.windows import windows


@pytest.mark.parametrize("T", [1, 3, 10])
@pytest.mark.parametrize("labelled", [False, True])
def test_distinct_windows_are_exactly_the_distinct_windows(T, labelled):
    rng = np.random.default_rng(T)
    X = rng.normal(size=(40, 5)).astype(np.float32)[rng.integers(0, 40, 1500)]
    X[7] = 0.0  # a real all-zero row is what the padding looks like to the model
    y = rng.integers(0, 2, len(X)) if labelled else None
    d = distinct_windows(X, T, y)
    W = windows(X, T)
    keys = W.reshape(len(W), -1)
    if labelled:
        keys = np.column_stack([keys, y])
    np.testing.assert_array_equal(W[d.first][d.inverse], W)  # every window gets its own back
    if labelled:
        np.testing.assert_array_equal(y[d.first][d.inverse], y)
    assert len(d) == len(np.unique(keys, axis=0))  # and no two distinct ids are equal
    assert d.counts.sum() == len(X) and (np.diff(d.first) > 0).all()
    np.testing.assert_array_equal(np.bincount(d.inverse), d.counts)


def test_row_ids_give_the_padding_the_id_of_an_all_zero_row():
    X = np.array([[1, 2], [0, 0], [1, 2]], np.float32)
    ids, pad = row_ids(X)
    assert ids[0] == ids[2] != ids[1] and pad == ids[1]


@pytest.mark.parametrize("width", [5, 76])
def test_row_ids_of_a_table_equal_the_exact_ids_and_survive_a_hash_collision(width, monkeypatch):
    """Row ids of a table named by `ids` partition the rows exactly as sorting their bytes does
    (-0.0 and 0.0 differ, as their bytes do); when every row hashes alike, the exact path."""
    from ids.data import distinct

    rng = np.random.default_rng(width)
    table = rng.normal(size=(30, width)).astype(np.float32)[rng.integers(0, 30, 200)]
    table[3], table[4] = 0.0, -0.0
    ids = rng.integers(0, len(table), 1000)

    def partition(pair):
        got, pad = pair
        return sorted(np.flatnonzero(got == g).tolist() for g in np.unique(got)), np.flatnonzero(
            got == pad).tolist()

    exact = distinct._exact_row_ids(table, ids)
    assert partition(row_ids(table, ids)) == partition(exact)
    assert partition(row_ids(table[ids])) == partition(exact)
    monkeypatch.setattr(distinct, "_row_hash", lambda rows: np.zeros(len(rows), np.uint64))
    assert partition(row_ids(table, ids)) == partition(exact)


def test_each_distinct_window_is_scored_once_and_copies_get_its_exact_score(tiny_model):
    from ids.model.runtime import predict_distinct, predict_proba

    _, scorer, cfg = tiny_model
    rng = np.random.default_rng(0)
    n_features = len(scorer.preprocessor.feature_names_)
    X = rng.normal(size=(3, n_features)).astype(np.float32)[rng.integers(0, 3, 600)]
    W = windows(X, scorer.window)
    d = distinct_windows(X, scorer.window)
    assert len(d) < len(W)
    plain = predict_proba(scorer.model, W, 256)
    np.testing.assert_array_equal(predict_distinct(scorer.model, W, d, 256), plain)
