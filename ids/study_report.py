"""After a sweep (or a resume): export the best configuration, the trials table and the plots.

Writes `<export_dir>/<study>/best.yaml` (rerun it with
`python -m ids.run --config-dir <export_dir> +<study>=best`) and `trials.csv`, and fills the
study's parent MLflow run with the best trial and Optuna's plots.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ids.tracking import redact

# Keys a rerun must not inherit from the trial: where the test split and checkpoints go.
_RERUN_DROP = {"trainer": ("evaluate_test", "checkpoint_dir")}


def best_overrides(cfg: DictConfig, trial: optuna.trial.FrozenTrial,
                   client: MlflowClient | None = None) -> dict:
    """The trial's whole resolved data/model/trainer config: reruns it exactly. Read from the
    config.yaml the trial's run logged (the record promote uses too) when the store has it,
    else rebuilt from today's config and the trial's params."""
    from ids.registry import logged_config
    from ids.space import apply

    logged = logged_config(client, trial.user_attrs.get("run_id"))
    tcfg = OmegaConf.to_container(logged if logged is not None else apply(cfg, trial.params),
                                  resolve=True)
    out = {"seed": tcfg["seed"]}
    for group in ("data", "model", "trainer"):
        out[group] = {k: v for k, v in tcfg[group].items() if k not in _RERUN_DROP.get(group, ())}
    return out


def write_best_yaml(cfg: DictConfig, study: optuna.Study, folder: Path,
                    client: MlflowClient | None = None) -> Path:
    best = study.best_trial
    body = best_overrides(cfg, best, client)
    name = str(cfg.sweep.study)
    metric = cfg.trainer.selection_metric
    header = (
        "# @package _global_\n"
        f"# Best trial {best.number} of study '{name}': val {metric} = {best.value:.6f}\n"
        f"# params: {best.params}\n"
        f"# Rerun exactly: python -m ids.run --config-dir {cfg.sweep.export_dir} +{name}=best\n"
    )
    path = folder / "best.yaml"
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path


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


def pruned_at(study: optuna.Study) -> dict[int, int]:
    """{epoch: number of trials pruned after it}, in epoch order."""
    epochs = [int(t.user_attrs.get("pruned_epoch", t.last_step or 0)) for t in study.trials
              if t.state == TrialState.PRUNED]
    return {e: epochs.count(e) for e in sorted(set(epochs))}


def finalize(cfg: DictConfig, study: optuna.Study, parent_run_id: str | None) -> dict:
    """Exports and parent-run logging; safe to call again after every resume."""
    folder = Path(cfg.sweep.export_dir) / str(cfg.sweep.study)
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.trials_dataframe()
    trials.to_csv(folder / "trials.csv", index=False)
    states = [t.state.name for t in study.trials]
    summary: dict = {"study": study.study_name, "folder": str(folder),
                     "n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED"),
                     "n_fail": states.count("FAIL"), "parent_run_id": parent_run_id,
                     "pruned_at": pruned_at(study)}
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        summary.update(best_number=best.number, best_value=best.value, best_params=best.params,
                       best_run_id=best.user_attrs.get("run_id"),
                       worst_value=min(t.value for t in completed) if
                       study.direction.name == "MAXIMIZE" else max(t.value for t in completed),
                       best_yaml=str(write_best_yaml(cfg, study, folder,
                                                     MlflowClient() if parent_run_id else None)))
    if parent_run_id:
        client = MlflowClient()
        summary["orphans_closed"] = close_orphan_runs(client, parent_run_id, study)
        client.log_artifact(parent_run_id, str(folder / "trials.csv"))
        for key in ("n_complete", "n_pruned", "n_fail"):
            client.log_metric(parent_run_id, f"study/{key}", summary[key])
        for epoch, n in summary["pruned_at"].items():
            client.log_metric(parent_run_id, f"study/pruned_at_epoch_{epoch}", n)
        if completed:
            client.log_metric(parent_run_id, "best/value", summary["best_value"])
            client.log_metric(parent_run_id, "best/trial", summary["best_number"])
            client.set_tag(parent_run_id, "best.trial", str(summary["best_number"]))
            client.set_tag(parent_run_id, "best.run_id", str(summary["best_run_id"]))
            for key, value in summary["best_params"].items():
                client.set_tag(parent_run_id, f"best.param.{key}", str(value))
            client.log_artifact(parent_run_id, summary["best_yaml"])
        log_plots(client, parent_run_id, study)
    return summary


def _at(pruned_at: dict | None) -> str:
    if not pruned_at:
        return ""
    return " (" + ", ".join(f"{n} at epoch {e}" for e, n in pruned_at.items()) + ")"


def print_summary(cfg: DictConfig, summary: dict) -> None:
    print(f"\nstudy '{summary['study']}': {summary['n_complete']} complete, "
          f"{summary['n_pruned']} pruned{_at(summary.get('pruned_at'))}, "
          f"{summary['n_fail']} failed")
    if "best_number" in summary:
        print(f"best trial {summary['best_number']}: val {cfg.trainer.selection_metric} = "
              f"{summary['best_value']:.4f} (worst complete: {summary['worst_value']:.4f})")
        print(f"  params: {summary['best_params']}")
        print(f"  rerun:  python -m ids.run --config-dir {cfg.sweep.export_dir} "
              f"+{summary['study']}=best   ({summary['best_yaml']})")
        print("  promote: make promote  (registers it as champion and scores the test split)")
    print(f"  trials: {summary['folder']}/trials.csv")
    if summary.get("parent_run_id"):
        print(f"  MLflow: parent run {summary['parent_run_id']} in {redact(cfg.tracking.uri)} "
              f"(experiment '{cfg.tracking.experiment}'); browse with `make ui`")
