"""Budget accounting (ids.model.budget, ids.tuning.report): where a trial's seconds go, summed
to its wall time, on a real tiny sweep (real Optuna SQLite storage, real MLflow store)."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from ids.model.budget import PARTS, Budget
from ids.tuning.report import trial_budget
from ids.tuning.study import open_study
from ids.tuning.sweep import sweep
from world import runs_of, sweep_cfg


def test_nested_parts_are_taken_out_of_the_enclosing_one():
    budget = Budget()
    t0 = time.perf_counter()
    with budget.part("tracking"):
        time.sleep(0.02)
        with budget.part("train"):
            time.sleep(0.05)
            with budget.part("val"):
                time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    s = budget.seconds  # counted twice, train would be >= 0.15 and tracking >= 0.17
    assert s["val"] >= 0.1 and 0.05 <= s["train"] < 0.12 and 0.02 <= s["tracking"] < 0.12
    assert budget.total() == pytest.approx(elapsed, abs=0.005)


def test_trial_budgets_add_up_to_their_wall_time_and_reach_the_summary(tmp_path):
    """One COMPLETE trial, then (resumed with a pruner that prunes everything it may judge) one
    trial PRUNED at epoch 1: each trial's parts cover its wall time but for a few percent, and
    the summary, trials.csv and the parent run say where the seconds went."""
    cfg = sweep_cfg(tmp_path, "sweep.n_trials=1", "sweep.pruner=none", "trainer.epochs=2",
                    "trainer.patience=0")
    sweep(cfg)
    cfg = sweep_cfg(tmp_path, "sweep.n_trials=2", "sweep.pruner=threshold",
                    "+sweep.pruner_args.lower=1.1", "sweep.pruner_warmup_epochs=0",
                    "trainer.epochs=2", "trainer.patience=0")
    summary = sweep(cfg)
    trials = open_study(cfg).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    for t in trials:
        b = trial_budget(t)
        parts = sum(b[p] for p in PARTS)
        assert abs(b["wall"] - parts) <= 0.05 * b["wall"], (t.number, b)
        assert b["compile"] > 0 and b["train"] > 0 and b["val"] > 0 and b["tracking"] > 0
    walls = [trial_budget(t)["wall"] for t in trials]
    budget = summary["budget"]
    assert budget["seconds"]["wall"] == pytest.approx(sum(walls))
    assert budget["pruned_share"] == pytest.approx(walls[1] / sum(walls))
    assert budget["per_finished_trial"] == pytest.approx(sum(walls) / 2)

    table = pd.read_csv(tmp_path / "sweeps" / "cnn_bilstm" / "trials.csv")
    assert {f"seconds_{p}" for p in (*PARTS, "other", "wall")} <= set(table.columns)
    assert table["seconds_wall"].tolist() == pytest.approx(walls)

    client, (parent,), _ = runs_of(cfg)
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert metrics["budget/wall_seconds"] == pytest.approx(sum(walls))
    assert metrics["budget/pruned_share"] == pytest.approx(budget["pruned_share"])
    history = client.get_metric_history(parent.info.run_id, "trial_budget/train_seconds")
    assert sorted({m.step for m in history}) == [0, 1]
