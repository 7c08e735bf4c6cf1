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

What it prints: one line per trial (`trial_line`, on stdout); on a terminal also a bar over the
trials (on stderr), drawn below those lines. Off a terminal (CI, `> log`) there is no bar, so a
log holds the lines and nothing redrawn.
"""

from __future__ import annotations

import math
import sys
import time

from omegaconf import DictConfig
from tqdm import tqdm

from ids import progress
from ids.config import validate
from ids.data.folds import joined
from ids.data.prepare import prepare
from ids.tracking import store
from ids.tuning import runs
from ids.tuning.report import finalize
from ids.tuning.space import check_space, check_start_points
from ids.tuning.study import FINISHED, counts, open_study
from ids.tuning.workers import run_workers, worker_loop

MIN_BENIGN = 100  # fewer benign validation flows than this: the objective is coarse


def resolution_note(y_val, what: str = "validation") -> str:
    """How finely validation can tell trials apart: one benign flow more or less moves benign
    recall by 1/benign and, near a perfect model, MCC by about as much as printed here."""
    n = len(y_val)
    benign = int(n - int(y_val.sum()))
    attack = n - benign
    mcc_one = 1.0
    if benign > 1 and attack > 0:  # a perfect model vs. the same with one false alarm
        tp, fp, tn = attack, 1, benign - 1
        mcc_one = 1.0 - (tp * tn) / math.sqrt((tp + fp) * attack * benign * (tn + 0.0))
    note = (f"{what}: {n} flows, {benign} benign; one benign flow is {1 / max(benign, 1):.4f} "
            f"of benign recall and about {mcc_one:.4f} of MCC")
    if benign < MIN_BENIGN:
        note = (f"WARNING: {note}. Trials closer than that cannot be told apart: use more flows "
                "(data.n_flows, a larger file) or data.split=chunks with a larger val share")
    return note


def sweep(cfg: DictConfig) -> dict:
    """Run (or resume) the study and return the summary written by `report.finalize`."""
    started = time.monotonic()
    validate(cfg)
    check_space(cfg)
    points = check_start_points(cfg)
    study = open_study(cfg)  # fails here on a bad storage URL, before any trial
    if points and not study.trials:  # a new study: its first trials are the start points
        for point in points:
            study.enqueue_trial(point, skip_if_exists=True)
    prepared = prepare(cfg.data, cache_dir=cfg.cache_dir)  # bad data fails here; workers reuse it
    folds = int(cfg.sweep.fixed.get("trainer.cv_folds", cfg.trainer.cv_folds) or 0)
    if folds:  # trials choose on the out-of-fold scores of train+val
        print(resolution_note(joined(prepared).y, f"out-of-fold scores of train+val ({folds} "
                              "folds)"), file=sys.stderr)
    else:
        print(resolution_note(prepared.val.y), file=sys.stderr)
    parent = runs.parent_run(cfg)
    try:
        if int(cfg.sweep.workers) > 1:
            run_workers(cfg, parent)
        else:
            with tqdm(total=int(cfg.sweep.n_trials), initial=min(counts(study)[0],
                      int(cfg.sweep.n_trials)), desc=f"study {cfg.sweep.study}", unit="trial",
                      file=sys.stderr, disable=not progress.on_terminal()) as bar:
                worker_loop(cfg, parent, on_trial=lambda st, t: bar.update(
                    int(t.state in FINISHED)))
        # exports can fail too (a full disk)
        summary = finalize(cfg, open_study(cfg), parent, time.monotonic() - started)
    except BaseException as exc:
        if parent:
            store.end_run(parent, store.status_for(exc))
        raise
    if parent:
        store.end_run(parent, "FINISHED")
    return summary
