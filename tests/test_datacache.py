"""Prepared data on disk (ids.data.cache): the same arrays back, another setting another entry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_overrides
from ids.config import compose
from ids.data import cache as datacache
from ids.data.flows import SPLITS, load_frame
from ids.data.prepare import clear_cache, prepare


def setup_function() -> None:
    clear_cache()  # the in-process cache would answer before the disk is asked


def _entries(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_a_prepared_entry_loads_back_identical_and_settings_key_it(tmp_path):
    cfg = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000"])
    cache = tmp_path / "cache"
    made = prepare(cfg.data, cache_dir=cache)
    (entry,) = _entries(cache)
    loaded = datacache.load(entry)
    assert loaded is not None
    for name in SPLITS:
        a, b = made.split(name), loaded.split(name)
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.hashes, b.hashes)
        assert list(a.attack) == list(b.attack)
    assert loaded.feature_names == made.feature_names
    assert loaded.info["hash"] == made.info["hash"]
    flows = load_frame(cfg.data).iloc[:50]
    np.testing.assert_array_equal(loaded.preprocessor.transform(flows),
                                  made.preprocessor.transform(flows))
    assert (entry / "loads.log").read_text().split() != []
    assert json.loads((entry / "meta.json").read_text())["format"] == datacache.FORMAT

    clear_cache()  # another process would find the entry: no second one is made
    prepare(cfg.data, cache_dir=cache)
    assert _entries(cache) == [entry]
    other = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000", "data.l7_top_k=4"])
    prepare(other.data, cache_dir=cache)
    assert len(_entries(cache)) == 2  # a different data setting is a different entry


def test_an_unreadable_entry_is_rebuilt_not_trusted(tmp_path):
    cfg = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000"])
    cache = tmp_path / "cache"
    made = prepare(cfg.data, cache_dir=cache)
    (entry,) = _entries(cache)
    (entry / "table.npy").unlink()  # replaced, not truncated: `made` still maps the old file
    (entry / "table.npy").write_bytes(b"not an npy file")
    with pytest.raises(datacache.Changed, match="table.npy has 15 bytes"):
        datacache.load(entry)
    clear_cache()
    again = prepare(cfg.data, cache_dir=cache)
    np.testing.assert_array_equal(again.train.X, made.train.X)
