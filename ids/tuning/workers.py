"""The sweep's workers: a loop that runs trials until the study is full, in this process or in
N spawned processes on the same study (`sweep.workers`), each with cores/N MindSpore threads.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from tqdm import tqdm

from ids import progress
from ids.config import Config
from ids.tracking import redact, signals
from ids.tuning.objective import Objective, trial_line
from ids.tuning.study import SweepError, counts, open_study


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
        sys.stdout.flush()  # one whole line at a time in a log, whichever worker writes it
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
    redact.install()  # its trials' "View run ... at:" lines hold the tracking URI too
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
               file=sys.stderr, disable=not progress.on_terminal())
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
