"""The sweep's MLflow runs, Optuna side: which parent run the study's workers share, which
trial runs are orphans, and the study's figures. The MLflow calls are `ids.tracking.sweeprun`.

The parent run's id is claimed in the study's user attributes (`ids.tuning.study.claim_study_attr`),
so every worker on every machine logs its trials under the same parent.
"""

from __future__ import annotations

import warnings

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from ids.tracking import store, sweeprun
from ids.tracking.redact import redact
from ids.tuning.study import PARENT_ATTR, claim_study_attr, storage_for


def parent_run(cfg: DictConfig) -> str | None:
    """The study's one parent run, shared by every worker on every machine: its id lives in the
    study (user attr `mlflow.parent_run_id`), set by whichever worker claims it first; a worker
    that loses the race deletes the run it made and joins the winner's."""
    if not cfg.tracking.enabled:
        return None
    exp_id = store.configure(cfg.tracking)
    study, storage_url = str(cfg.sweep.study), redact(str(cfg.sweep.storage))
    storage = storage_for(cfg.sweep)
    study_id = storage.get_study_id_from_name(study)
    current = storage.get_study_user_attrs(study_id).get(PARENT_ATTR)
    if current and sweeprun.usable_parent(current, exp_id):
        return sweeprun.reopen(current)
    mine = sweeprun.find_parent(exp_id, study, storage_url)
    created = mine is None
    if created:
        mine = sweeprun.create_parent(exp_id, study, storage_url)
    winner = claim_study_attr(storage, study_id, PARENT_ATTR, current, mine)
    if winner != mine:
        if created:
            sweeprun.delete_run(mine)
        return winner
    if not created:
        return sweeprun.reopen(mine)
    sweeprun.log_parent_config(mine, cfg)
    return mine


def running_numbers(study: optuna.Study) -> set[str]:
    return {str(t.number) for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.RUNNING}


def figures(study: optuna.Study) -> dict:
    """Optuna's optimization history, parameter importances, parallel coordinates and
    intermediate values, as matplotlib figures (those that can be drawn yet)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history,
             "param_importances": ovm.plot_param_importances,
             "parallel_coordinate": ovm.plot_parallel_coordinate,
             "intermediate_values": ovm.plot_intermediate_values}
    out = {}
    for name, fn in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two completed trials
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(9, 5.5)
        fig.tight_layout()
        out[name] = fig
    return out


def log_study(parent_run_id: str, study: optuna.Study, summary: dict, folder) -> None:
    """The study's state on its parent run; children left RUNNING by a killed worker end
    KILLED."""
    summary["orphans_closed"] = sweeprun.close_orphans(parent_run_id, running_numbers(study))
    sweeprun.log_study(parent_run_id, summary, folder, figures(study))
