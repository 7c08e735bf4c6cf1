"""A sweep in MLflow: the study's one parent run, its trials' runs and states, its summary.

Optuna-free: `ids.tuning.runs` decides (which worker's parent run wins, which trials are still
running, which figures to draw) and hands plain values here. A trial's state tag
(`trial.state`: RUNNING, PRUNED, COMPLETE, FAIL) is written only by `trial_tags` (at the
start of its run) and `set_trial_state`.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ids.tracking import store
from ids.tracking.database import retried
from ids.tracking.redact import redact, redacted

STATE = "trial.state"


def trial_tags(study: str, number: int, attempt: str) -> dict[str, str]:
    """The tags a trial's run starts with (state RUNNING); `attempt` finds this attempt's run
    again if it fails."""
    return {"ids.role": "trial", "ids.study": study, "trial.number": str(number),
            STATE: "RUNNING", "trial.attempt": attempt}


def set_trial_state(run_id: str | None, state: str, extra: dict | None = None) -> None:
    """The trial's state (and `extra` tags, e.g. `trial.pruned_epoch`, `error`) on its run;
    run_id None: the active run."""
    values = {STATE: state, **{k: str(v) for k, v in (extra or {}).items()}}
    if run_id is None:
        mlflow.set_tags(values)
        return
    client = MlflowClient()
    for key, value in values.items():
        client.set_tag(run_id, key, value)


def mark_trial_failed(exp_id: str, run_name: str, tags: dict, values: dict, reason: str,
                      parent_run_id: str | None) -> None:
    """State FAIL on the trial's run; create one if the trial failed before its run started."""
    client = MlflowClient()
    own = client.search_runs(
        [exp_id], filter_string=f"tags.`trial.attempt` = '{tags['trial.attempt']}'")
    if own:
        set_trial_state(own[0].info.run_id, "FAIL")
        return
    run = client.create_run(exp_id, run_name=run_name,
                            tags={**tags, "error": redact(reason)[:5000],
                                  "mlflow.parentRunId": parent_run_id or ""})
    set_trial_state(run.info.run_id, "FAIL")
    for key, value in values.items():
        client.log_param(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FAILED")


def usable_parent(run_id: str, exp_id: str) -> bool:
    """The stored parent run exists, is not deleted and is in this experiment (it is not when
    mlruns/ was wiped or the study moved to another tracking server)."""
    try:
        run = MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return run.info.lifecycle_stage == "active" and run.info.experiment_id == exp_id


def reopen(run_id: str) -> str:
    MlflowClient().update_run(run_id, status="RUNNING")
    return run_id


def delete_run(run_id: str) -> None:
    MlflowClient().delete_run(run_id)


def find_parent(exp_id: str, study: str, storage_url: str) -> str | None:
    """A parent run of a study started before the parent's id was stored in the study."""
    found = mlflow.search_runs(
        [exp_id], output_format="list",
        filter_string=f"tags.`ids.role` = 'sweep' and tags.`ids.study` = '{study}' "
                      f"and tags.`ids.storage` = '{storage_url}'")
    return found[0].info.run_id if found else None


def create_parent(exp_id: str, study: str, storage_url: str) -> str:
    tags = {**store.runtime_tags(), "ids.role": "sweep", "ids.study": study,
            "ids.storage": storage_url}
    return MlflowClient().create_run(exp_id, run_name=f"sweep-{study}", tags=tags).info.run_id


def log_parent_config(run_id: str, cfg: DictConfig) -> None:
    """The sweep's settings as params and the whole config as config.yaml, redacted."""
    client = MlflowClient()
    params = {k: str(v)[:500] for k, v in store.flatten(
        redacted(OmegaConf.to_container(cfg.sweep, resolve=True)), "sweep.").items()}
    for key, value in params.items():
        client.log_param(run_id, key, value)
    client.log_text(run_id, store.config_yaml(cfg), "config.yaml")


def close_orphans(parent_run_id: str, running: set[str]) -> int:
    """Child runs left RUNNING by a killed worker end KILLED (state FAIL) unless their trial
    number is in `running` (still running in the study)."""
    client = MlflowClient()
    run = client.get_run(parent_run_id)
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                      "attributes.status = 'RUNNING'")
    closed = 0
    for child in children:
        if child.data.tags.get("trial.number") not in running:
            set_trial_state(child.info.run_id, "FAIL",
                            {"error": "worker killed; trial failed by heartbeat"})
            client.set_terminated(child.info.run_id, "KILLED")
            closed += 1
    return closed


def log_study(parent_run_id: str, summary: dict, folder: Path, figures: dict) -> None:
    """The study's state on its parent run: counts, pruned-at epochs, best trial, trials.csv,
    best.yaml and the study's figures ({name: matplotlib figure})."""
    import matplotlib.pyplot as plt

    client = MlflowClient()
    client.log_artifact(parent_run_id, str(folder / "trials.csv"))
    for key in ("n_complete", "n_pruned", "n_fail"):
        client.log_metric(parent_run_id, f"study/{key}", summary[key])
    for epoch, n in summary["pruned_at"].items():
        client.log_metric(parent_run_id, f"study/pruned_at_epoch_{epoch}", n)
    if "best_number" in summary:
        client.log_metric(parent_run_id, "best/value", summary["best_value"])
        client.log_metric(parent_run_id, "best/trial", summary["best_number"])
        _set_shared_tag(client, parent_run_id, "best.trial", str(summary["best_number"]))
        _set_shared_tag(client, parent_run_id, "best.run_id", str(summary["best_run_id"]))
        for key, value in summary["best_params"].items():
            _set_shared_tag(client, parent_run_id, f"best.param.{key}", str(value))
        client.log_artifact(parent_run_id, summary["best_yaml"])
    log_budget(client, parent_run_id, summary)
    for name, fig in figures.items():
        client.log_figure(parent_run_id, fig, f"plots/{name}.png")
        plt.close(fig)


def _set_shared_tag(client: MlflowClient, run_id: str, key: str, value: str) -> None:
    """Sweep commands ending together write the same tags on their shared parent run, and the
    store's insert-or-update of a tag can lose that race (a duplicate key on PostgreSQL):
    retried, since the tag then exists and the update goes through."""
    retried(lambda: client.set_tag(run_id, key, value), pause=0.2)


def log_budget(client: MlflowClient, run_id: str, summary: dict) -> None:
    """Where the study's seconds went: `budget/<part>_seconds` summed over its trials,
    `budget/pruned_share`, `budget/seconds_per_finished_trial`, this invocation's
    `budget/sweep_wall_seconds`, and each trial's parts as `trial_budget/<part>_seconds`
    (step = trial number: one chart per part across the study)."""
    budget, now = summary["budget"], int(time.time() * 1000)
    totals = {**{f"{k}_seconds": v for k, v in budget["seconds"].items()},
              "pruned_share": budget["pruned_share"],
              "seconds_per_finished_trial": budget["per_finished_trial"]}
    if summary.get("wall_seconds") is not None:
        totals["sweep_wall_seconds"] = summary["wall_seconds"]
    metrics = [Metric(f"budget/{k}", float(v), now, 0) for k, v in totals.items()]
    metrics += [Metric(f"trial_budget/{k}_seconds", float(v), now, int(number))
                for number, parts in budget["per_trial"].items() for k, v in parts.items()]
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start: start + 1000])
