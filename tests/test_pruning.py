"""Pruning keeps good trials: nothing is judged during the warm-up, the pruner sees the best
value so far, and a trial that reaches its last epoch is COMPLETE. Real Optuna studies (SQLite),
real training for the end-to-end case."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from ids.config import compose
from ids.tuning.objective import PruneGate
from ids.tuning.study import make_pruner, open_study
from ids.tuning.sweep import resolution_note, sweep
from world import runs_of, sweep_cfg

FAST = [0.60, 0.70, 0.72, 0.73, 0.74]  # good from the first epoch, then flat
SLOW = [0.00, 0.30, 0.75, 0.80, 0.85]  # near the all-attack MCC 0 at first, finishes best


def run_curves(tmp_path, sweep_overrides: list[str], curves: list[list[float]]):
    """One trial per validation-MCC curve through `PruneGate` and the configured pruner."""
    cfg = compose(sweep_overrides)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/curves.db", direction="maximize",
                                pruner=make_pruner(cfg.sweep, 5))

    def objective(trial: optuna.Trial) -> float:
        curve = curves[trial.number]
        gate = PruneGate(epochs=len(curve), patience=0)
        for epoch, value in enumerate(curve, start=1):
            if gate.should_prune(trial, epoch, (value, value - 1.0), value):
                trial.set_user_attr("pruned_epoch", epoch)
                raise optuna.TrialPruned()
        return max(curve)

    study.optimize(objective, n_trials=len(curves))
    return study


def test_slow_starter_that_finishes_best_survives_the_default_pruner(tmp_path):
    study = run_curves(tmp_path, [], [FAST] * 5 + [SLOW])
    slow = study.trials[-1]
    assert slow.state == TrialState.COMPLETE
    assert study.best_trial.number == slow.number and slow.value == pytest.approx(0.85)
    # The old setting (pruning from epoch 1 after 3 trials, on the raw epoch value) lost it:
    (tmp_path / "old").mkdir()
    old = run_curves(tmp_path / "old",
                     ["sweep.pruner_warmup_epochs=0", "sweep.pruner_startup_trials=3"],
                     [FAST] * 5 + [SLOW])
    assert old.trials[-1].state == TrialState.PRUNED
    assert old.trials[-1].user_attrs["pruned_epoch"] == 1


def test_pruner_sees_the_best_value_so_far_and_never_the_last_epoch(tmp_path):
    dip = [0.60, 0.73, 0.50, 0.74, 0.60]  # one bad epoch must not count against it
    worse = [0.10, 0.20, 0.30, 0.40, 0.50]  # below the others from epoch 3 on: pruned there
    study = run_curves(tmp_path, [], [FAST] * 5 + [dip, worse])
    assert study.trials[5].state == TrialState.COMPLETE
    assert study.trials[5].intermediate_values == {1: 0.6, 2: 0.73, 3: 0.73, 4: 0.74, 5: 0.74}
    assert study.trials[6].state == TrialState.PRUNED
    assert study.trials[6].user_attrs["pruned_epoch"] == 3


def test_trial_reaching_its_last_epoch_is_complete_in_a_real_sweep(tmp_path):
    """A pruner that would prune everything (threshold 1.1 on MCC): the warm-up epochs and the
    last epoch are never judged, so 3-epoch trials finish and 4-epoch ones stop at epoch 3."""
    cfg = sweep_cfg(tmp_path, "sweep.n_trials=2", "sweep.pruner=threshold",
                    "+sweep.pruner_args.lower=1.1", "trainer.epochs=3", "trainer.patience=0")
    summary = sweep(cfg)
    assert [t.state for t in open_study(cfg).trials] == [TrialState.COMPLETE] * 2
    assert summary["n_pruned"] == 0 and summary["pruned_at"] == {}
    _, _, children = runs_of(cfg)
    assert {c.data.tags["trial.state"] for c in children} == {"COMPLETE"}

    cfg = sweep_cfg(tmp_path / "four", "sweep.n_trials=1", "sweep.pruner=threshold",
                    "+sweep.pruner_args.lower=1.1", "trainer.epochs=4", "trainer.patience=0")
    summary = sweep(cfg)
    assert summary["pruned_at"] == {3: 1}


def test_pruner_defaults_are_the_documented_ones():
    s = compose([]).sweep
    assert (s.pruner_warmup_epochs, s.pruner_startup_trials) == (2, 5)
    pruner = make_pruner(OmegaConf.create(dict(s)), 5)
    assert isinstance(pruner, optuna.pruners.MedianPruner)


def test_resolution_warning_names_the_benign_count():
    few = resolution_note(np.r_[np.zeros(34), np.ones(7500)])
    assert few.startswith("WARNING") and "34 benign" in few and "0.0294 of benign recall" in few
    many = resolution_note(np.r_[np.zeros(1200), np.ones(13800)])
    assert not many.startswith("WARNING") and "1200 benign" in many
