"""After a sweep (or a resume): export the best configuration, the trials table and the plots.

Writes `<export_dir>/<study>/best.yaml` (rerun it with
`python -m ids.run --config-dir <export_dir> +<study>=best`) and `trials.csv`, and fills the
study's parent MLflow run with the best trial and Optuna's plots.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ids import outputs
from ids.model.budget import PARTS
from ids.tracking import store
from ids.tracking.redact import redact
from ids.tracking.registry import logged_config
from ids.tuning import runs
from ids.tuning.space import apply
from ids.tuning.study import champion

# Keys a rerun must not inherit from the trial: where the test split and checkpoints go.
_RERUN_DROP = {"trainer": ("evaluate_test", "checkpoint_dir")}


def best_overrides(cfg: DictConfig, trial: optuna.trial.FrozenTrial,
                   client=None) -> dict:
    """The trial's whole resolved data/model/trainer config: reruns it exactly. Read from the
    config.yaml the trial's run logged (the record promote uses too) when the store has it,
    else rebuilt from today's config and the trial's params."""
    logged = logged_config(client, trial.user_attrs.get("run_id"))
    tcfg = OmegaConf.to_container(logged if logged is not None else apply(cfg, trial.params),
                                  resolve=True)
    out = {"seed": tcfg["seed"]}
    for group in ("data", "model", "trainer"):
        out[group] = {k: v for k, v in tcfg[group].items() if k not in _RERUN_DROP.get(group, ())}
    return out


def write_best_yaml(cfg: DictConfig, study: optuna.Study, folder: Path,
                    client=None) -> Path:
    best = champion(study)
    body = best_overrides(cfg, best, client)
    name = str(cfg.sweep.study)
    metric = cfg.trainer.selection_metric
    header = (
        "# @package _global_\n"
        f"# Best trial {best.number} of study '{name}': val {metric} = {best.value:.6f}\n"
        f"# params: {best.params}\n"
        f"# Rerun exactly: python -m ids.run --config-dir {cfg.sweep.export_dir} +{name}=best\n"
    )
    return outputs.write_text(folder / "best.yaml", header + yaml.safe_dump(body, sort_keys=False),
                              key="sweep.export_dir", reclaim=True)


def pruned_at(study: optuna.Study) -> dict[int, int]:
    """{epoch: number of trials pruned after it}, in epoch order."""
    epochs = [int(t.user_attrs.get("pruned_epoch", t.last_step or 0)) for t in study.trials
              if t.state == TrialState.PRUNED]
    return {e: epochs.count(e) for e in sorted(set(epochs))}


def trial_budget(t: optuna.trial.FrozenTrial) -> dict[str, float] | None:
    """Seconds of a finished trial per part (`ids.model.budget.PARTS`), its wall time (Optuna's
    start to end) and `other`: the wall time no part accounts for (storage writes, the tell)."""
    parts = t.user_attrs.get("budget")
    if parts is None or t.datetime_complete is None or t.datetime_start is None:
        return None
    wall = (t.datetime_complete - t.datetime_start).total_seconds()
    out = {p: float(parts.get(p, 0.0)) for p in PARTS}
    out["other"] = wall - sum(parts.values())
    out["wall"] = wall
    return out


def study_budget(study: optuna.Study) -> dict:
    """Seconds per part of each trial and summed over the study's trials, the share of them
    spent on pruned trials, and the mean wall seconds per finished (COMPLETE or PRUNED) trial."""
    rows = [(t.number, t.state, b) for t in study.trials if (b := trial_budget(t)) is not None]
    total = {k: sum(b[k] for _, _, b in rows) for k in (*PARTS, "other", "wall")}
    pruned = sum(b["wall"] for _, st, b in rows if st == TrialState.PRUNED)
    finished = [b["wall"] for _, st, b in rows if st in (TrialState.COMPLETE, TrialState.PRUNED)]
    return {"seconds": total, "trials": len(rows), "per_trial": {n: b for n, _, b in rows},
            "pruned_share": pruned / total["wall"] if total["wall"] else 0.0,
            "per_finished_trial": sum(finished) / len(finished) if finished else 0.0}


def _trials_frame(study: optuna.Study):
    """Optuna's trials table with the budget as columns `seconds_<part>` (and wall, other)."""
    frame = study.trials_dataframe()
    if "user_attrs_budget" in frame:
        frame = frame.drop(columns="user_attrs_budget")
        budgets = {t.number: trial_budget(t) or {} for t in study.trials}
        for key in (*PARTS, "other", "wall"):
            frame[f"seconds_{key}"] = [budgets[n].get(key) for n in frame["number"]]
    return frame


def finalize(cfg: DictConfig, study: optuna.Study, parent_run_id: str | None,
             wall_seconds: float | None = None) -> dict:
    """Exports and parent-run logging; safe to call again after every resume. `wall_seconds`:
    how long this invocation of the sweep took, so far."""
    folder = Path(cfg.sweep.export_dir) / str(cfg.sweep.study)
    folder.mkdir(parents=True, exist_ok=True)
    outputs.write_text(folder / "trials.csv", _trials_frame(study).to_csv(index=False),
                       key="sweep.export_dir", reclaim=True)
    states = [t.state.name for t in study.trials]
    summary: dict = {"study": study.study_name, "folder": str(folder),
                     "n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED"),
                     "n_fail": states.count("FAIL"), "parent_run_id": parent_run_id,
                     "pruned_at": pruned_at(study), "budget": study_budget(study),
                     "wall_seconds": wall_seconds}
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if completed:
        best = champion(study)
        summary.update(best_number=best.number, best_value=best.value, best_params=best.params,
                       best_run_id=best.user_attrs.get("run_id"),
                       worst_value=min(t.value for t in completed) if
                       study.direction.name == "MAXIMIZE" else max(t.value for t in completed),
                       best_yaml=str(write_best_yaml(cfg, study, folder,
                                                     store.client() if parent_run_id else None)))
    if parent_run_id:
        runs.log_study(parent_run_id, study, summary, folder)
    return summary


def _at(pruned_at: dict | None) -> str:
    if not pruned_at:
        return ""
    return " (" + ", ".join(f"{n} at epoch {e}" for e, n in pruned_at.items()) + ")"


def budget_line(summary: dict) -> str:
    """Where the study's trial seconds went, in one line."""
    b = summary["budget"]
    sec = b["seconds"]
    if not sec["wall"]:
        return "budget: no trial accounted yet"
    parts = ", ".join(f"{k} {100 * sec[k] / sec['wall']:.0f} %" for k in (*PARTS, "other"))
    wall = summary.get("wall_seconds")
    run = f"; this run {wall:.0f} s wall" if wall else ""
    return (f"budget: {sec['wall']:.0f} s in {b['trials']} trials, "
            f"{b['per_finished_trial']:.1f} s per finished trial{run}: {parts}; "
            f"pruned trials {100 * b['pruned_share']:.0f} % of it")


def print_summary(cfg: DictConfig, summary: dict, overrides: list[str] | None = None) -> None:
    """The study's outcome and the commands that follow; `overrides` (the sweep's command line,
    less the swept keys) go into the promote command, so it finds the same study and store."""
    print(f"\nstudy '{summary['study']}': {summary['n_complete']} complete, "
          f"{summary['n_pruned']} pruned{_at(summary.get('pruned_at'))}, "
          f"{summary['n_fail']} failed")
    if "best_number" in summary:
        print(f"best trial {summary['best_number']}: val {cfg.trainer.selection_metric} = "
              f"{summary['best_value']:.4f} (worst complete: {summary['worst_value']:.4f})")
        print(f"  params: {summary['best_params']}")
        print(f"  rerun:  python -m ids.run --config-dir {cfg.sweep.export_dir} "
              f"+{summary['study']}=best   ({summary['best_yaml']})")
        swept = set(cfg.sweep.params)  # the trial's own values win: not repeated here
        args = " ".join(shlex.quote(redact(o)) for o in overrides or []
                        if o.lstrip("+~").split("=", 1)[0] not in swept)
        print(f"  promote: python -m ids.promote {args}".rstrip()
              + "  (registers it as champion and scores the test split)")
    print(budget_line(summary))
    print(f"  trials: {summary['folder']}/trials.csv (seconds per part: seconds_*)")
    if summary.get("parent_run_id"):
        print(f"  MLflow: parent run {summary['parent_run_id']} in {redact(cfg.tracking.uri)} "
              f"(experiment '{cfg.tracking.experiment}'); browse with `make ui`")
