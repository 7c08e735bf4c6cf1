"""The sweep's MLflow runs: the study's one parent run, the trials' states, the study summary.

The tracking side of `ids.sweep` (which speaks Optuna only): the parent run's id is claimed in
the study's user attributes (`ids.study.claim_study_attr`), so every worker on every machine
logs its trials under the same parent.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ids import tracking
from ids.study import PARENT_ATTR, claim_study_attr, storage_for
from ids.tracking import redact


def client() -> MlflowClient:
    return MlflowClient()


def set_tag(run_id: str, key: str, value: str) -> None:
    MlflowClient().set_tag(run_id, key, value)


def end_run(run_id: str, status: str) -> None:
    MlflowClient().set_terminated(run_id, status)


def mark_trial_failed(exp_id: str, run_name: str, tags: dict, values: dict, reason: str,
                      parent_run_id: str | None) -> None:
    """Tag the trial's child run FAIL; create one if the trial failed before it started."""
    client = MlflowClient()
    own = client.search_runs(
        [exp_id], filter_string=f"tags.`trial.attempt` = '{tags['trial.attempt']}'")
    if own:
        client.set_tag(own[0].info.run_id, "trial.state", "FAIL")
        return
    run = client.create_run(exp_id, run_name=run_name,
                            tags={**tags, "trial.state": "FAIL", "error": reason[:5000],
                                  "mlflow.parentRunId": parent_run_id or ""})
    for key, value in values.items():
        client.log_param(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FAILED")


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
        tracking.redacted(OmegaConf.to_container(cfg.sweep, resolve=True)), "sweep.").items()}
    for key, value in params.items():
        client.log_param(mine, key, value)
    client.log_text(mine, tracking.config_yaml(cfg), "config.yaml")
    return mine


def close_orphan_runs(client: MlflowClient, parent_run_id: str, study: optuna.Study) -> int:
    """Child runs left RUNNING by a killed worker end KILLED once their trial is no longer
    running in the study (the heartbeat failed it)."""
    run = client.get_run(parent_run_id)
    running = {str(t.number) for t in study.get_trials(deepcopy=False)
               if t.state == TrialState.RUNNING}
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                      "attributes.status = 'RUNNING'")
    closed = 0
    for child in children:
        if child.data.tags.get("trial.number") not in running:
            client.set_tag(child.info.run_id, "trial.state", "FAIL")
            client.set_tag(child.info.run_id, "error", "worker killed; trial failed by heartbeat")
            client.set_terminated(child.info.run_id, "KILLED")
            closed += 1
    return closed


def log_plots(client: MlflowClient, run_id: str, study: optuna.Study) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history,
             "param_importances": ovm.plot_param_importances,
             "parallel_coordinate": ovm.plot_parallel_coordinate,
             "intermediate_values": ovm.plot_intermediate_values}
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
        client.log_figure(run_id, fig, f"plots/{name}.png")
        plt.close(fig)


def log_study(parent_run_id: str, study: optuna.Study, summary: dict, folder: Path) -> None:
    """The study's state on its parent run: counts, pruned-at epochs, best trial, trials.csv,
    best.yaml and Optuna's plots; children left RUNNING by a killed worker end KILLED."""
    client = MlflowClient()
    summary["orphans_closed"] = close_orphan_runs(client, parent_run_id, study)
    client.log_artifact(parent_run_id, str(folder / "trials.csv"))
    for key in ("n_complete", "n_pruned", "n_fail"):
        client.log_metric(parent_run_id, f"study/{key}", summary[key])
    for epoch, n in summary["pruned_at"].items():
        client.log_metric(parent_run_id, f"study/pruned_at_epoch_{epoch}", n)
    if "best_number" in summary:
        client.log_metric(parent_run_id, "best/value", summary["best_value"])
        client.log_metric(parent_run_id, "best/trial", summary["best_number"])
        client.set_tag(parent_run_id, "best.trial", str(summary["best_number"]))
        client.set_tag(parent_run_id, "best.run_id", str(summary["best_run_id"]))
        for key, value in summary["best_params"].items():
            client.set_tag(parent_run_id, f"best.param.{key}", str(value))
        client.log_artifact(parent_run_id, summary["best_yaml"])
    log_plots(client, parent_run_id, study)
