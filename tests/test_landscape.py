"""The landscape measurement: a small real study on the synthetic data, then the best config
retrained with several seeds. Context length must move validation MCC more than seeds do."""

from __future__ import annotations

import pytest

from ids.tools import landscape
from ids.tuning.sweep import sweep
from world import sweep_cfg


@pytest.mark.slow
def test_context_length_moves_val_mcc_more_than_seeds(tmp_path, capsys):
    space = {"data.window": {"type": "categorical", "choices": [1, 10]},
             "model.lstm_units": {"type": "categorical", "choices": [8, 16]}}
    overrides = ["data.n_flows=20000", "sweep.n_trials=4", "sweep.pruner=none",
                 "sweep.sampler=random", "trainer.epochs=3", "model.filters=16"]
    cfg = sweep_cfg(tmp_path, *overrides, params=space)
    summary = sweep(cfg)
    assert summary["n_complete"] == 4
    m = landscape.measure(cfg, n_seeds=2)
    print(f"config spread {m['config_spread']:.4f}, seed spread {m['seed_spread']:.4f}")
    assert len(m["seed_values"]) == 2 and m["n_complete"] == 4
    assert m["config_spread"] == pytest.approx(summary["best_value"] - summary["worst_value"])
    assert m["config_spread"] > 2 * m["seed_spread"]
    # No pruning, so every trial and seed reached the last epoch: the equal-budget comparison
    # is the full one (each trial's value is its best so far there).
    assert m["epoch"] == 3 and m["n_finished"] == 4
    assert m["equal_spread"] == pytest.approx(m["config_spread"])
    assert m["seed_spread_at_epoch"] == pytest.approx(m["seed_spread"])


def test_the_equal_budget_value_is_the_best_so_far_at_that_epoch():
    curve = {1: 0.80, 2: 0.86, 3: 0.84, 5: 0.90}
    assert [landscape.best_by(curve, e) for e in (1, 2, 3, 4, 5)] == [0.80, 0.86, 0.86, 0.86, 0.90]
