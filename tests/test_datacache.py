"""Prepared data on disk (ids.datacache): the same arrays back, another setting another entry."""

from __future__ import annotations

import json

import numpy as np

from conftest import tiny_overrides
from ids import data as data_mod
from ids import datacache
from ids.config import compose


def setup_function() -> None:
    data_mod.clear_cache()  # the in-process cache would answer before the disk is asked


def _entries(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_a_prepared_entry_loads_back_identical_and_settings_key_it(tmp_path):
    cfg = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000"])
    cache = tmp_path / "cache"
    made = data_mod.prepare(cfg.data, cache_dir=cache)
    (entry,) = _entries(cache)
    loaded = datacache.load(entry)
    assert loaded is not None
    for name in data_mod.SPLITS:
        a, b = made.split(name), loaded.split(name)
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.hashes, b.hashes)
        assert list(a.attack) == list(b.attack)
    assert loaded.feature_names == made.feature_names
    assert loaded.info["hash"] == made.info["hash"]
    flows = data_mod.load_frame(cfg.data).iloc[:50]
    np.testing.assert_array_equal(loaded.preprocessor.transform(flows),
                                  made.preprocessor.transform(flows))
    assert (entry / "loads.log").read_text().split() != []
    assert json.loads((entry / "meta.json").read_text())["format"] == datacache.FORMAT

    data_mod.clear_cache()  # another process would find the entry: no second one is made
    data_mod.prepare(cfg.data, cache_dir=cache)
    assert _entries(cache) == [entry]
    other = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000", "data.l7_top_k=4"])
    data_mod.prepare(other.data, cache_dir=cache)
    assert len(_entries(cache)) == 2  # a different data setting is a different entry


def test_an_unreadable_entry_is_rebuilt_not_trusted(tmp_path):
    cfg = compose(tiny_overrides(tmp_path) + ["data.n_flows=2000"])
    cache = tmp_path / "cache"
    made = data_mod.prepare(cfg.data, cache_dir=cache)
    (entry,) = _entries(cache)
    (entry / "arrays.npz").write_bytes(b"not an npz file")
    assert datacache.load(entry) is None
    data_mod.clear_cache()
    again = data_mod.prepare(cfg.data, cache_dir=cache)
    np.testing.assert_array_equal(again.train.X, made.train.X)
