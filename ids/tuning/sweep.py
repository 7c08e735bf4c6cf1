"""The main job: an Optuna study over the CNN-BiLSTM, tracked in MLflow.

    make sweep                                   # = python -m ids.sweep
    make sweep ARGS="sweep.n_trials=20"          # run again to resume: n_trials is the total
    make sweep WORKERS=2                         # two worker processes on one study

Objective: the validation selection metric of the trial's best epoch (`trainer.selection_metric`,
MCC by default); never a test metric; always maximised. After every epoch the pruner sees the
trial's best value so far (`PruneGate`); it may stop a trial only after
`sweep.pruner_warmup_epochs` epochs and never at its last epoch (a trial that reaches it is
COMPLETE). Each trial is a
nested MLflow run under one parent run per study; the study lives in `sweep.storage`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import time
import uuid
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from tqdm import tqdm

from ids.config import Config, validate
from ids.data.prepare import prepare
from ids.experiment.train import train
from ids.tracking import signals, store, sweeprun
from ids.tracking.redact import redact
from ids.tuning import runs
from ids.tuning.report import finalize
from ids.tuning.space import apply, check_space, check_start_points, suggest
from ids.tuning.study import (
    FINISHED,
    SweepError,
    best_or_none,
    counts,
    make_sampler,
    open_study,
)


class TrialPruned(optuna.TrialPruned, store.StopRun):
    """Optuna's pruned-trial signal that also ends the trial's MLflow run FINISHED."""


class SurplusTrial(RuntimeError):
    """Another worker already holds the last open slot of the study."""


class PruneGate:
    """What the pruner sees and when it may act, per trial.

    It reports the trial's best value so far (what the trial would return if stopped now), not
    a noisy last epoch; and it never asks at the last epoch (`trainer.epochs`, or the epoch
    where patience runs out): a trial that got there costs nothing more to finish, so it ends
    COMPLETE. The bookkeeping mirrors `ids.train.fit` (improvement, ties broken by val loss).
    """

    def __init__(self, epochs: int, patience: int) -> None:
        self.epochs, self.patience = epochs, patience
        self.best, self.loss, self.stale = -math.inf, math.inf, 0

    def should_prune(self, trial: optuna.Trial, epoch: int, value: float, loss: float) -> bool:
        if value > self.best or (value == self.best and loss < self.loss):
            self.best, self.loss, self.stale = value, loss, 0
        else:
            self.stale += 1
        trial.report(self.best, epoch)
        last = epoch >= self.epochs or (self.patience > 0 and self.stale >= self.patience)
        return not last and trial.should_prune()


class Objective:
    """Trains one configuration per trial; data is prepared once per worker and reused."""

    def __init__(self, cfg: DictConfig, parent_run_id: str | None, workers: int) -> None:
        self.cfg, self.parent_run_id, self.workers = cfg, parent_run_id, workers
        self.exp_id = store.configure(cfg.tracking) if cfg.tracking.enabled else None

    def __call__(self, trial: optuna.Trial) -> float:
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
        metric = f"val/{tcfg.trainer.selection_metric}"
        tags = sweeprun.trial_tags(str(self.cfg.sweep.study), trial.number, uuid.uuid4().hex)

        gate = PruneGate(int(tcfg.trainer.epochs), int(tcfg.trainer.patience))

        def on_epoch(epoch: int, record: dict) -> None:
            if gate.should_prune(trial, epoch, float(record[metric]), float(record["val/loss"])):
                trial.set_user_attr("pruned_epoch", epoch)
                if tcfg.tracking.enabled:
                    sweeprun.set_trial_state(None, "PRUNED", {"trial.pruned_epoch": epoch})
                raise TrialPruned(f"pruned at epoch {epoch}")

        try:
            validate(tcfg)
            prepared = prepare(tcfg.data, cache_dir=tcfg.cache_dir)
            summary = train(tcfg, prepared=prepared, on_epoch=on_epoch,
                                    parent_run_id=self.parent_run_id, tags=tags,
                                    workers=self.workers)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = redact(f"{type(exc).__name__}: {exc}")  # kept in the study and MLflow
            trial.set_user_attr("fail_reason", reason[:2000])
            if self.cfg.tracking.enabled:
                sweeprun.mark_trial_failed(self.exp_id, f"{self.cfg.sweep.study}-trial-"
                                             f"{trial.number}", tags, values, reason,
                                             self.parent_run_id)
            raise
        if not math.isfinite(summary["value"]):
            trial.set_user_attr("fail_reason", f"objective is {summary['value']}")
            raise ValueError(f"trial {trial.number}: objective {metric} is {summary['value']}")
        for key in ("run_id", "model_uri", "best_epoch", "threshold", "seconds", "val_loss"):
            if summary.get(key) is not None:
                trial.set_user_attr(key, summary[key])
        if summary.get("run_id"):
            sweeprun.set_trial_state(summary["run_id"], "COMPLETE")
        return float(summary["value"])

def trial_line(study: optuna.Study, t: optuna.trial.FrozenTrial, worker: int) -> str:
    dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0
    value = "-" if t.value is None else f"{t.value:.4f}"
    best = best_or_none(study)
    best_s = f"{best.value:.4f} (#{best.number})" if best else "-"
    params = " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in t.params.items())
    extra = t.user_attrs.get("fail_reason", "")
    if t.state == TrialState.PRUNED:
        extra = f"at epoch {t.user_attrs.get('pruned_epoch', '?')}"
    return (f"[w{worker}] trial {t.number:3d} {t.state.name:8s} value={value} best={best_s} "
            f"{dur:5.0f}s {params} {extra}").rstrip()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def worker_loop(cfg: DictConfig, parent_run_id: str | None, worker: int = 0, workers: int = 1,
                on_trial=None) -> None:
    """Run trials until the study holds `sweep.n_trials` finished ones."""
    study = open_study(cfg, salt=1000 * worker)  # QMC keeps this one; others reseed per trial
    objective = Objective(cfg, parent_run_id, workers)
    n_target, deadline = int(cfg.sweep.n_trials), cfg.sweep.timeout_seconds
    started = time.monotonic()

    failures: list[str] = []  # consecutive failures of this worker

    def report(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if t.user_attrs.get("fail_reason", "").startswith("surplus"):
            return
        if t.state == TrialState.FAIL:
            failures.append(t.user_attrs.get("fail_reason", "unknown error"))
        else:
            failures.clear()
        tqdm.write(trial_line(st, t, worker))  # keeps the progress bar below the lines
        if on_trial is not None:
            on_trial(st, t)

    while deadline is None or time.monotonic() - started < float(deadline):
        if len(failures) >= int(cfg.sweep.max_failures):
            raise SweepError(f"{len(failures)} trials failed in a row (sweep.max_failures); "
                             f"last error: {failures[-1]}. Fix the search space or the data, "
                             "then run the same command again to resume")
        optuna.storages.fail_stale_trials(study)
        finished, running = counts(study)
        if finished >= n_target:
            return
        if finished + running >= n_target:
            time.sleep(min(2.0, float(cfg.sweep.heartbeat_seconds)))  # others hold the slots
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[report])


def _worker_process(cfg_container: dict, parent_run_id: str | None, worker: int,
                    workers: int) -> None:
    """Entry point of a spawned worker: rebuild the typed config and run the loop."""
    signals.end_runs_killed_on_sigterm()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg_container)
    worker_loop(cfg, parent_run_id, worker, workers)


def run_workers(cfg: DictConfig, parent_run_id: str | None) -> None:
    """N spawned processes on one study; this process draws the progress bar."""
    n = int(cfg.sweep.workers)
    threads = max(1, (os.cpu_count() or 1) // n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    ctx = mp.get_context("spawn")
    container = OmegaConf.to_container(cfg, resolve=True)
    procs = [ctx.Process(target=_worker_process, args=(container, parent_run_id, w, n),
                         name=f"ids-sweep-worker-{w}") for w in range(n)]
    for p in procs:
        p.start()
    study = open_study(cfg)
    bar = tqdm(total=int(cfg.sweep.n_trials), desc=f"study {cfg.sweep.study}", unit="trial",
               file=sys.stderr)
    try:
        while any(p.is_alive() for p in procs):
            bar.n = min(counts(study)[0], bar.total)
            bar.refresh()
            time.sleep(1.0)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
        bar.n = min(counts(study)[0], bar.total)
        bar.close()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} sweep worker(s) exited with codes {bad}; "
                           "the study is intact: run the same command again to resume")


MIN_BENIGN = 100  # fewer benign validation flows than this: the objective is coarse


def resolution_note(y_val) -> str:
    """How finely validation can tell trials apart: one benign flow more or less moves benign
    recall by 1/benign and, near a perfect model, MCC by about as much as printed here."""
    n = len(y_val)
    benign = int(n - int(y_val.sum()))
    attack = n - benign
    mcc_one = 1.0
    if benign > 1 and attack > 0:  # a perfect model vs. the same with one false alarm
        tp, fp, tn = attack, 1, benign - 1
        mcc_one = 1.0 - (tp * tn) / math.sqrt((tp + fp) * attack * benign * (tn + 0.0))
    note = (f"validation: {n} flows, {benign} benign; one benign flow is {1 / max(benign, 1):.4f} "
            f"of benign recall and about {mcc_one:.4f} of MCC")
    if benign < MIN_BENIGN:
        note = (f"WARNING: {note}. Trials closer than that cannot be told apart: use more flows "
                "(data.n_flows, a larger file) or data.split=chunks with a larger val share")
    return note


def sweep(cfg: DictConfig) -> dict:
    """Run (or resume) the study and return the summary written by `report.finalize`."""
    validate(cfg)
    check_space(cfg)
    points = check_start_points(cfg)
    study = open_study(cfg)  # fails here on a bad storage URL, before any trial
    if points and not study.trials:  # a new study: its first trials are the start points
        for point in points:
            study.enqueue_trial(point, skip_if_exists=True)
    prepared = prepare(cfg.data, cache_dir=cfg.cache_dir)  # bad data fails here; workers reuse it
    print(resolution_note(prepared.val.y), file=sys.stderr)
    parent = runs.parent_run(cfg)
    try:
        if int(cfg.sweep.workers) > 1:
            run_workers(cfg, parent)
        else:
            with tqdm(total=int(cfg.sweep.n_trials), initial=min(counts(study)[0],
                      int(cfg.sweep.n_trials)), desc=f"study {cfg.sweep.study}", unit="trial",
                      file=sys.stderr) as bar:
                worker_loop(cfg, parent, on_trial=lambda st, t: bar.update(
                    int(t.state in FINISHED)))
        summary = finalize(cfg, open_study(cfg), parent)  # exports can fail too (a full disk)
    except BaseException as exc:
        if parent:
            store.end_run(parent, store.status_for(exc))
        raise
    if parent:
        store.end_run(parent, "FINISHED")
    return summary
