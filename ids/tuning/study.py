"""The Optuna study behind a sweep (Optuna only; its MLflow runs are in `ids.tuning.runs`).

Storage with heartbeats (a killed worker's trial is failed and retried), seeded samplers,
pruners by name, and `claim_study_attr`: the compare-and-set on a study user attribute that
lets every worker, on any machine, agree on one value (the id of the study's parent run).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

from ids.config import ConfigError
from ids.tracking import database
from ids.tracking.redact import redact

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Heartbeats and stale-trial retry are "experimental" in Optuna 5 but are what resuming needs.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class SweepError(ConfigError):
    """The sweep cannot start (storage, study); the message names the key and the fix."""


_STORAGES: dict[tuple, optuna.storages.RDBStorage] = {}


def storage_for(sweep_cfg) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats, so trials of a killed worker are found and retried;
    one per URL and process (its engine and connection pool are shared by every caller)."""
    key = (os.getpid(), str(sweep_cfg.storage), int(sweep_cfg.heartbeat_seconds),
           int(sweep_cfg.max_retry))
    if key not in _STORAGES:
        _STORAGES[key] = _new_storage(sweep_cfg)
    return _STORAGES[key]


def _new_storage(sweep_cfg) -> optuna.storages.RDBStorage:
    url = str(sweep_cfg.storage)
    try:
        database.check_reachable(url, "sweep.storage")
    except database.StoreError as exc:
        raise SweepError(str(exc)) from exc
    hb = int(sweep_cfg.heartbeat_seconds)

    def open_storage() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=hb, grace_period=2 * hb,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=int(sweep_cfg.max_retry)),
            engine_kwargs={"pool_pre_ping": True},
        )

    try:  # workers starting at once on a new database all get it (tables created once)
        return database.first_use(url, open_storage)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many kinds; all mean "cannot use it"
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
    """The pruner by name. It sees, per epoch, the trial's best validation value so far (see
    `ids.tuning.objective.PruneGate`), never the last epoch's, and judges nothing during the first
    `sweep.pruner_warmup_epochs` epochs (Optuna step s may be pruned when s >= n_warmup_steps,
    steps are 1-based epochs) nor before `sweep.pruner_startup_trials` trials have finished."""
    args = dict(sweep_cfg.pruner_args or {})
    warmup = int(sweep_cfg.pruner_warmup_epochs) + 1  # first epoch that may be pruned
    startup = int(sweep_cfg.pruner_startup_trials)
    name = sweep_cfg.pruner
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(**{"n_startup_trials": startup,
                                              "n_warmup_steps": warmup, **args})
    if name == "percentile":
        return optuna.pruners.PercentilePruner(**{"percentile": 25.0, "n_startup_trials": startup,
                                                  "n_warmup_steps": warmup, **args})
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**{"min_resource": warmup, "max_resource": epochs,
                                                 **args})
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**{"min_resource": warmup, **args})
    return optuna.pruners.ThresholdPruner(**{"n_warmup_steps": warmup, **args})


def open_study(cfg: DictConfig, salt: int = 0) -> optuna.Study:
    """The study `sweep.study`, created if new (a sweep starts or resumes it)."""
    s = cfg.sweep
    try:
        return optuna.create_study(
            study_name=str(s.study), storage=storage_for(s), direction="maximize",
            sampler=make_sampler(s, salt), pruner=make_pruner(s, int(cfg.trainer.epochs)),
            load_if_exists=True)
    except TypeError as exc:
        raise SweepError(f"sweep.pruner_args {dict(s.pruner_args)} do not fit pruner "
                         f"'{s.pruner}': {exc}") from exc


def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials: finished = COMPLETE + PRUNED; FAIL never counts."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(st in FINISHED for st in states), states.count(TrialState.RUNNING)


def champion(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best COMPLETE trial by the validation objective. Ties (common: MCC moves in steps of
    one flow when validation holds few benign flows) go to the lower validation loss of the
    trial's best epoch, as within a trial in `ids.model.fit.fit`, then to the lower trial
    number (`rank`)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no COMPLETE trial")
    return max(complete, key=lambda t: rank(t.value, t.user_attrs.get("val_loss"), t.number))


def rank(value: float, val_loss: float | None, number: int) -> tuple:
    """What `champion` maximises: the value, then the lower val loss, then the lower number."""
    return value, -(math.inf if val_loss is None else val_loss), -number


def would_lead(study: optuna.Study, summary: dict, number: int) -> bool:
    """Would a trial finishing COMPLETE with this summary (value, val_loss) be the study's
    champion now? Only such a trial can be promoted later (values never change, and later
    trials only raise the bar)."""
    best = best_or_none(study)
    return best is None or rank(float(summary["value"]), summary.get("val_loss"), number) > \
        rank(best.value, best.user_attrs.get("val_loss"), best.number)


def best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return champion(study)
    except ValueError:
        return None


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
