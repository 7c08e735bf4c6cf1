"""The main job: an Optuna study over the CNN-BiLSTM, tracked in MLflow.

    make sweep                                   # = python -m ids.sweep
    make sweep ARGS="sweep.n_trials=20"          # run again to resume: n_trials is the total
    make sweep WORKERS=2                         # two worker processes on one study

Objective: the validation selection metric of the trial's best epoch (`trainer.selection_metric`,
F1 by default); never a test metric. Every epoch is reported to the pruner. Each trial is a
nested MLflow run under one parent run per study; the study lives in `sweep.storage`.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import sys
import time
import uuid
import warnings
from typing import Any

import hydra
import mlflow
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

from ids import data as data_mod
from ids import run as run_mod
from ids import tracking
from ids.config import Config, ConfigError, validate
from ids.data import DataError
from ids.registry import redact
from ids.space import apply, check_space, suggest

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Heartbeats and stale-trial retry are "experimental" in Optuna 5 but are what resuming needs.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class SweepError(ConfigError):
    """The sweep cannot start (storage, study); the message names the key and the fix."""


class SurplusTrial(RuntimeError):
    """Another worker already holds the last open slot of the study."""


def storage_for(sweep_cfg) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats, so trials of a killed worker are found and retried."""
    url = str(sweep_cfg.storage)
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url[len("sqlite:///"):])), exist_ok=True)
    hb = int(sweep_cfg.heartbeat_seconds)
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=hb, grace_period=2 * hb,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=int(sweep_cfg.max_retry)),
                engine_kwargs={"pool_pre_ping": True},
            )
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError) as exc:
            # Workers starting at once on a new database race to create Optuna's tables and
            # types ("duplicate key ... pg_type", "already exists"); the loser just retries.
            error = exc
            time.sleep(0.5 + attempt)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds; all mean "cannot use it"
            error = exc
            break
    raise SweepError(
        f"sweep.storage={redact(url)!r} is malformed or unreachable ({type(error).__name__}: "
        f"{error}). Use an Optuna RDB URL such as sqlite:///sweeps/optuna.db or "
        "postgresql+psycopg2://user:password@host:5432/db") from error


def make_sampler(sweep_cfg, salt: int = 0) -> optuna.samplers.BaseSampler:
    """Seeded sampler; `salt` (worker, trials so far) keeps workers and resumes from repeating."""
    seed = int(sweep_cfg.seed) + salt
    if sweep_cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sweep_cfg.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def make_pruner(sweep_cfg, epochs: int) -> optuna.pruners.BasePruner:
    args = dict(sweep_cfg.pruner_args or {})
    warmup = int(sweep_cfg.pruner_warmup_epochs)
    name = sweep_cfg.pruner
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(**{"n_startup_trials": 3, "n_warmup_steps": warmup,
                                              **args})
    if name == "percentile":
        return optuna.pruners.PercentilePruner(**{"percentile": 25.0, "n_startup_trials": 3,
                                                  "n_warmup_steps": warmup, **args})
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**{"min_resource": 1, "max_resource": epochs,
                                                 **args})
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**args)
    return optuna.pruners.ThresholdPruner(**{"n_warmup_steps": warmup, **args})


def load_study(cfg: DictConfig, salt: int = 0) -> optuna.Study:
    s = cfg.sweep
    try:
        return optuna.create_study(
            study_name=str(s.study), storage=storage_for(s), direction=str(s.direction),
            sampler=make_sampler(s, salt), pruner=make_pruner(s, int(cfg.trainer.epochs)),
            load_if_exists=True)
    except TypeError as exc:
        raise SweepError(f"sweep.pruner_args {dict(s.pruner_args)} do not fit pruner "
                         f"'{s.pruner}': {exc}") from exc


def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials: finished = COMPLETE + PRUNED; FAIL never counts."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(st in FINISHED for st in states), states.count(TrialState.RUNNING)


def best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


class Objective:
    """Trains one configuration per trial; data is prepared once per worker and reused."""

    def __init__(self, cfg: DictConfig, parent_run_id: str | None, workers: int) -> None:
        self.cfg, self.parent_run_id, self.workers = cfg, parent_run_id, workers
        self.exp_id = tracking.configure(cfg.tracking) if cfg.tracking.enabled else None

    def __call__(self, trial: optuna.Trial) -> float:
        finished = sum(t.state in FINISHED for t in trial.study.get_trials(deepcopy=False))
        ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number
                    for t in trial.study.get_trials(deepcopy=False))
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
        metric = f"val/{tcfg.trainer.selection_metric}"
        tags = {"ids.role": "trial", "ids.study": str(self.cfg.sweep.study),
                "trial.number": str(trial.number), "trial.state": "RUNNING",
                "trial.attempt": uuid.uuid4().hex}  # finds this attempt's run if it fails

        def on_epoch(epoch: int, record: dict) -> None:
            trial.report(float(record[metric]), epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_epoch", epoch)
                if tcfg.tracking.enabled:
                    mlflow.set_tags({"trial.state": "PRUNED", "trial.pruned_epoch": str(epoch)})
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            validate(tcfg)
            prepared = data_mod.prepare(tcfg.data)
            summary = run_mod.train(tcfg, prepared=prepared, on_epoch=on_epoch,
                                    parent_run_id=self.parent_run_id, tags=tags,
                                    workers=self.workers)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason[:2000])
            self._mark_failed(trial, tags, values, reason)
            raise
        if not math.isfinite(summary["value"]):
            trial.set_user_attr("fail_reason", f"objective is {summary['value']}")
            raise ValueError(f"trial {trial.number}: objective {metric} is {summary['value']}")
        for key in ("run_id", "model_uri", "best_epoch", "threshold", "seconds"):
            if summary.get(key) is not None:
                trial.set_user_attr(key, summary[key])
        if summary.get("run_id"):
            MlflowClient().set_tag(summary["run_id"], "trial.state", "COMPLETE")
        return float(summary["value"])

    def _mark_failed(self, trial, tags: dict, values: dict, reason: str) -> None:
        """Tag the trial's child run FAIL; create one if the trial failed before it started."""
        if not self.cfg.tracking.enabled:
            return
        client = MlflowClient()
        own = client.search_runs(
            [self.exp_id], filter_string=f"tags.`trial.attempt` = '{tags['trial.attempt']}'")
        if own:
            client.set_tag(own[0].info.run_id, "trial.state", "FAIL")
            return
        run = client.create_run(self.exp_id, run_name=f"{self.cfg.sweep.study}-trial-{trial.number}",
                                tags={**tags, "trial.state": "FAIL", "error": reason[:5000],
                                      "mlflow.parentRunId": self.parent_run_id or ""})
        for key, value in values.items():
            client.log_param(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FAILED")


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
    study = load_study(cfg, salt=1000 * worker)  # QMC keeps this one; others reseed per trial
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
        print(trial_line(st, t, worker), flush=True)
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs end KILLED, not RUNNING
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg_container)
    worker_loop(cfg, parent_run_id, worker, workers)


PARENT_ATTR = "mlflow.parent_run_id"  # study user attr: the one parent run of all workers


def claim_study_attr(storage: optuna.storages.RDBStorage, study_id: int, key: str,
                     old: Any, new: Any) -> Any:
    """Compare-and-set of a study user attr: `key` becomes `new` only if it is still `old`
    (None: absent); returns the value that won. One INSERT (the table is unique on study and
    key) or one UPDATE ... WHERE value = old, so of many workers racing on any number of
    machines exactly one wins, on SQLite, PostgreSQL and MySQL alike (`set_user_attr` is an
    upsert: the last writer would win)."""
    import sqlalchemy as sa

    table = sa.table("study_user_attributes", sa.column("study_id"), sa.column("key"),
                     sa.column("value_json"))
    try:
        with storage.engine.begin() as conn:
            if old is None:
                conn.execute(sa.insert(table).values(study_id=study_id, key=key,
                                                     value_json=json.dumps(new)))
            else:
                conn.execute(sa.update(table).where(
                    table.c.study_id == study_id, table.c.key == key,
                    table.c.value_json == json.dumps(old)).values(value_json=json.dumps(new)))
    except sa_exc.IntegrityError:
        pass  # another worker inserted first
    return storage.get_study_user_attrs(study_id).get(key)


def _usable_parent(client: MlflowClient, run_id: str, exp_id: str) -> bool:
    """The stored parent run exists, is not deleted and is in this experiment (it is not when
    mlruns/ was wiped or the study moved to another tracking server)."""
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return run.info.lifecycle_stage == "active" and run.info.experiment_id == exp_id


def parent_run(cfg: DictConfig) -> str | None:
    """The study's one parent run, shared by every worker on every machine: its id lives in the
    study (user attr `mlflow.parent_run_id`), set by whichever worker claims it first; a worker
    that loses the race deletes the run it made and joins the winner's."""
    if not cfg.tracking.enabled:
        return None
    exp_id = tracking.configure(cfg.tracking)
    study, storage_url = str(cfg.sweep.study), redact(str(cfg.sweep.storage))
    storage = storage_for(cfg.sweep)
    study_id = storage.get_study_id_from_name(study)
    client = MlflowClient()
    current = storage.get_study_user_attrs(study_id).get(PARENT_ATTR)
    if current and _usable_parent(client, current, exp_id):
        client.update_run(current, status="RUNNING")
        return current
    found = mlflow.search_runs(  # a study started before the parent id was stored in it
        [exp_id], output_format="list",
        filter_string=f"tags.`ids.role` = 'sweep' and tags.`ids.study` = '{study}' "
                      f"and tags.`ids.storage` = '{storage_url}'")
    if found:
        mine, created = found[0].info.run_id, False
    else:
        tags = {**tracking.runtime_tags(), "ids.role": "sweep", "ids.study": study,
                "ids.storage": storage_url}
        mine, created = client.create_run(exp_id, run_name=f"sweep-{study}",
                                          tags=tags).info.run_id, True
    winner = claim_study_attr(storage, study_id, PARENT_ATTR, current, mine)
    if winner != mine:
        if created:
            client.delete_run(mine)
        return winner
    if not created:
        client.update_run(mine, status="RUNNING")
        return mine
    params = {k: str(v)[:500] for k, v in tracking.flatten(
        OmegaConf.to_container(cfg.sweep, resolve=True), "sweep.").items()}
    for key, value in params.items():
        client.log_param(mine, key, value)
    client.log_text(mine, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    return mine


def run_workers(cfg: DictConfig, parent_run_id: str | None) -> None:
    """N spawned processes on one study; this process draws the progress bar."""
    from tqdm import tqdm

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
    study = load_study(cfg)
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


def sweep(cfg: DictConfig) -> dict:
    """Run (or resume) the study and return the summary written by `study_report.finalize`."""
    from tqdm import tqdm

    from ids.study_report import finalize

    validate(cfg)
    check_space(cfg)
    study = load_study(cfg)  # fails here on a bad storage URL, before any trial
    data_mod.prepare(cfg.data)  # bad data fails here too, and the worker reuses it
    parent = parent_run(cfg)
    client = MlflowClient() if parent else None
    try:
        if int(cfg.sweep.workers) > 1:
            run_workers(cfg, parent)
        else:
            with tqdm(total=int(cfg.sweep.n_trials), initial=min(counts(study)[0],
                      int(cfg.sweep.n_trials)), desc=f"study {cfg.sweep.study}", unit="trial",
                      file=sys.stderr) as bar:
                worker_loop(cfg, parent, on_trial=lambda st, t: bar.update(
                    int(t.state in FINISHED)))
    except BaseException as exc:
        if client:
            client.set_terminated(parent, "KILLED" if isinstance(exc, KeyboardInterrupt)
                                  else "FAILED")
        raise
    summary = finalize(cfg, load_study(cfg), parent)
    if client:
        client.set_terminated(parent, "FINISHED")
    return summary


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs end KILLED, not RUNNING
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summary = sweep(cfg)
    except (ConfigError, DataError) as exc:
        run_mod.fail(exc)
    from ids.study_report import print_summary

    print_summary(cfg, summary)


if __name__ == "__main__":
    main()
