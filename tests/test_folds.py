"""Cross-validation folds (ids.data.folds): contiguous, disjoint blocks that cover the flows
outside test once and never a test flow; no window crosses a fold, in memory and from the
prepared store; distinct windows agree with the windows themselves."""

from __future__ import annotations

import numpy as np
import pytest

from ids.config import compose
from ids.data.distinct import distinct_windows
from ids.data.flows import DataError
from ids.data.folds import fold_bounds, joined, make_folds
from ids.data.prepare import clear_cache, prepare
from ids.data.windows import windows


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    clear_cache()
    cfg = compose(["data.n_flows=3000", "data.window=4"])
    mem = prepare(cfg.data, cache_dir=None)
    clear_cache()
    stored = prepare(cfg.data, cache_dir=str(tmp_path_factory.mktemp("store")))
    clear_cache()
    return {"memory": mem, "store": stored}


@pytest.mark.parametrize("n,k", [(10, 3), (2100, 5), (7, 7), (1000, 2)])
def test_fold_bounds_are_contiguous_disjoint_and_cover_once(n, k):
    bounds = fold_bounds(n, k)
    assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a < b for a, b in bounds)
    assert all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:], strict=False))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("k", [1, 0, 11])
def test_too_few_or_too_many_folds_is_one_line(k):
    with pytest.raises(DataError, match="cv_folds"):
        fold_bounds(10, k)


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_folds_cover_train_and_val_once_and_never_test(prepared, kind):
    p = prepared[kind]
    folds = make_folds(p, 3)
    outside = np.concatenate([p.train.rows, p.val.rows])
    held = np.concatenate([f.data.val.rows for f in folds])
    assert np.array_equal(held, outside)  # every flow outside test held out once, in order
    test_rows = set(p.test.rows.tolist())
    for f in folds:
        train_rows, held_rows = set(f.data.train.rows.tolist()), set(f.data.val.rows.tolist())
        assert not train_rows & held_rows and not (train_rows | held_rows) & test_rows
        assert train_rows | held_rows == set(outside.tolist())
        assert f.data.test is p.test


@pytest.mark.parametrize("kind", ["memory", "store"])
@pytest.mark.parametrize("T", [1, 4, 9])
def test_no_window_crosses_a_fold(prepared, kind, T):
    """Each fold's windows equal windows built on each block alone (zero padding at every
    block start): a training window never reads a held-out flow, nor the reverse."""
    p = prepared[kind]
    X = np.asarray(joined(p).X)
    bounds = fold_bounds(len(X), 3)
    per_block = [windows(X[a:b], T) for a, b in bounds]
    for f, fold in zip(range(3), make_folds(p, 3), strict=True):
        assert np.array_equal(np.asarray(fold.data.val.windows(T)[:]), per_block[f])
        others = np.concatenate([per_block[g] for g in range(3) if g != f])
        got = fold.data.train.windows(T)
        assert np.array_equal(np.asarray(got[:]), others)
        pick = np.array([0, len(others) - 1, len(others) // 2])  # gathered by index too
        assert np.array_equal(got[pick], others[pick])


@pytest.mark.parametrize("labelled", [False, True])
def test_distinct_windows_of_a_fold_are_its_windows(prepared, labelled):
    fold = make_folds(prepared["store"], 3)[1]
    for split in (fold.data.train, fold.data.val):
        d = split.distinct(4, labelled=labelled)
        w = np.asarray(split.windows(4)[:]).reshape(len(split.y), -1)
        ref = distinct_windows(w, 1, split.y if labelled else None)
        assert np.array_equal(d.first, ref.first) and np.array_equal(d.inverse, ref.inverse)
