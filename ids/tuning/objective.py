"""One sweep trial: the configuration it samples, its training run, what the pruner sees.

`Objective` trains one configuration per trial on data prepared once per worker and says where
the trial's seconds went (user attr `budget`: `ids.model.budget.PARTS`); `PruneGate` decides
what the pruner is shown and when it may act.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from ids.config import cv_folds, validate
from ids.data.prepare import prepare
from ids.evaluation.baselines import cv_baselines, split_baselines
from ids.experiment.train import train
from ids.model.budget import Budget
from ids.tracking import store, sweeprun
from ids.tracking.redact import redact
from ids.tuning.space import apply, suggest
from ids.tuning.study import FINISHED, best_or_none, make_sampler, would_lead


class TrialPruned(optuna.TrialPruned, store.StopRun):
    """Optuna's pruned-trial signal that also ends the trial's MLflow run FINISHED."""


class SurplusTrial(RuntimeError):
    """Another worker already holds the last open slot of the study."""


# sweep.prune_on (names: ids.config.PRUNE_SIGNALS): the validation figure the pruner compares.
# "metric" is trainer.selection_metric at its tuned threshold; the others are threshold-free:
# (record key of ids.model.fit's epoch record, +1 if higher is better else -1).
SIGNALS = {"metric": None, "loss": ("val/loss", -1.0), "balanced_loss": ("val/balanced_loss", -1.0),
           "roc_auc": ("val/roc_auc", 1.0), "pr_auc": ("val/pr_auc", 1.0)}


def prune_signal(record: dict, prune_on: str, metric: str) -> float:
    """The epoch's figure for the pruner, higher is better."""
    key, sign = SIGNALS[prune_on] or (f"val/{metric}", 1.0)
    return sign * float(record[key])


class PruneGate:
    """What the pruner sees and when it may act, per trial.

    It reports the trial's best signal so far (`sweep.prune_on`: what the trial has shown it can
    reach), not a noisy last epoch; and it never asks at the last epoch (`trainer.epochs`, or
    the epoch where patience runs out): a trial that got there costs nothing more to finish, so
    it ends COMPLETE. Patience is counted as `ids.model.fit.fit` counts it (the selection metric,
    ties to the lower val loss).
    """

    def __init__(self, epochs: int, patience: int) -> None:
        self.epochs, self.patience = epochs, patience
        self.kept: tuple[float, float] = (-math.inf, -math.inf)
        self.best, self.stale = -math.inf, 0

    def should_prune(self, trial: optuna.Trial, epoch: int, kept: tuple[float, float],
                     signal: float) -> bool:
        """`kept`: (metric, -val loss) of the epoch, as fit ranks epochs; `signal`: the
        pruner's figure of the epoch."""
        if kept > self.kept:
            self.kept, self.stale = kept, 0
        else:
            self.stale += 1
        self.best = max(self.best, signal)
        trial.report(self.best, epoch)
        last = epoch >= self.epochs or (self.patience > 0 and self.stale >= self.patience)
        return not last and trial.should_prune()


class Objective:
    """Trains one configuration per trial; data is prepared once per worker and reused."""

    def __init__(self, cfg: DictConfig, parent_run_id: str | None, workers: int) -> None:
        self.cfg, self.parent_run_id, self.workers = cfg, parent_run_id, workers
        self.exp_id = store.configure(cfg.tracking) if cfg.tracking.enabled else None

    def __call__(self, trial: optuna.Trial) -> float:
        budget = Budget()
        try:
            return self._run(trial, budget)
        finally:  # every trial, pruned or failed too, says where its seconds went
            trial.set_user_attr("budget", {k: round(v, 4) for k, v in budget.seconds.items()})

    def _run(self, trial: optuna.Trial, budget: Budget) -> float:
        with budget.part("search"):
            tcfg, values = self._configure(trial)
        metric = f"val/{tcfg.trainer.selection_metric}"
        tags = sweeprun.trial_tags(str(self.cfg.sweep.study), trial.number, uuid.uuid4().hex)
        gate = PruneGate(int(tcfg.trainer.epochs), int(tcfg.trainer.patience))

        def on_epoch(epoch: int, record: dict) -> None:
            if record.get("fold", 1) > 1:  # cross-validated: the rungs are the first fold's
                return
            with budget.part("search"):
                m = tcfg.trainer.selection_metric
                prune = gate.should_prune(
                    trial, epoch, (float(record[metric]), -float(record["val/loss"])),
                    prune_signal(record, str(self.cfg.sweep.prune_on), m))
            if prune:
                trial.set_user_attr("pruned_epoch", epoch)
                if tcfg.tracking.enabled:
                    with budget.part("tracking"):
                        sweeprun.set_trial_state(None, "PRUNED", {"trial.pruned_epoch": epoch})
                raise TrialPruned(f"pruned at epoch {epoch}")

        try:
            with budget.part("data"):
                validate(tcfg)
                prepared = prepare(tcfg.data, cache_dir=tcfg.cache_dir)
                if tcfg.trainer.baselines:  # fitted once per process and data setting
                    if folds := cv_folds(tcfg):  # what the trial's report compares with
                        cv_baselines(prepared, folds, int(tcfg.seed),
                                     tcfg.trainer.selection_metric)
                    else:
                        split_baselines(prepared, "val", int(tcfg.seed),
                                        tcfg.trainer.selection_metric)
            with budget.part("tracking"):  # what train() leaves to its parts is MLflow
                summary = train(tcfg, prepared=prepared, on_epoch=on_epoch,
                                parent_run_id=self.parent_run_id, tags=tags,
                                workers=self.workers, budget=budget,
                                keep_artifacts=self._keep_artifacts(trial, budget))
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = redact(f"{type(exc).__name__}: {exc}")  # kept in the study and MLflow
            trial.set_user_attr("fail_reason", reason[:2000])
            if self.cfg.tracking.enabled:
                with budget.part("tracking"):
                    sweeprun.mark_trial_failed(self.exp_id, f"{self.cfg.sweep.study}-trial-"
                                               f"{trial.number}", tags, values, reason,
                                               self.parent_run_id)
            raise
        if not math.isfinite(summary["value"]):
            trial.set_user_attr("fail_reason", f"objective is {summary['value']}")
            raise ValueError(f"trial {trial.number}: objective {metric} is {summary['value']}")
        with budget.part("search"):
            for key in ("run_id", "model_uri", "best_epoch", "threshold", "seconds", "val_loss"):
                if summary.get(key) is not None:
                    trial.set_user_attr(key, summary[key])
        if summary.get("run_id"):
            with budget.part("tracking"):
                sweeprun.set_trial_state(summary["run_id"], "COMPLETE")
        return float(summary["value"])

    def _keep_artifacts(self, trial: optuna.Trial, budget: Budget):
        """sweep.log_artifacts=best: plots and the model only for a trial that leads the study
        when it finishes (2-3 s a trial otherwise, and only a leader can become champion)."""
        if self.cfg.sweep.log_artifacts == "all":
            return None

        def keep(summary: dict) -> bool:
            with budget.part("search"):
                return would_lead(trial.study, summary, trial.number)

        return keep

    def _configure(self, trial: optuna.Trial) -> tuple[DictConfig, dict]:
        """The trial's config and sampled values; SurplusTrial when the study is full."""
        trials = trial.study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
        if finished + ahead >= int(self.cfg.sweep.n_trials):
            trial.set_user_attr("fail_reason", "surplus: the study already had enough trials")
            raise SurplusTrial(f"trial {trial.number} is surplus")
        if self.cfg.sweep.sampler != "qmc":  # QMC workers share one sequence and seed
            # Seeded by the trial number, unique across workers and machines: two workers that
            # start together on one study do not sample the same configuration.
            trial.study.sampler = make_sampler(self.cfg.sweep, salt=trial.number)
        values = suggest(trial, self.cfg.sweep.params)
        tcfg = apply(self.cfg, values)
        tcfg.trainer.evaluate_test = False  # test data is touched once, by ids.promote
        tcfg.tracking.run_name = f"{self.cfg.sweep.study}-trial-{trial.number}"
        tcfg.quiet = True  # the sweep prints one line per trial, not one per epoch
        return tcfg, values


def trial_line(study: optuna.Study, t: optuna.trial.FrozenTrial, worker: int) -> str:
    dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0
    value = "value=-" if t.value is None else f"value={t.value:.4f}"
    if t.state == TrialState.PRUNED and t.intermediate_values:  # the pruner's signal, not MCC
        value = f"signal={t.intermediate_values[max(t.intermediate_values)]:.4f}"
    best = best_or_none(study)
    best_s = f"{best.value:.4f} (#{best.number})" if best else "-"
    params = " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in t.params.items())
    extra = t.user_attrs.get("fail_reason", "")
    if t.state == TrialState.PRUNED:
        extra = f"at epoch {t.user_attrs.get('pruned_epoch', '?')}"
    return (f"[w{worker}] trial {t.number:3d} {t.state.name:8s} {value} best={best_s} "
            f"{dur:5.0f}s {params} {extra}").rstrip()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
