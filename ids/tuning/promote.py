"""Promote a study's best trial: register its model, point `champion` at it, score it on test.

    make promote                                  # = python -m ids.promote (study sweep.study)
    python -m ids.promote sweep.study=other promote.evaluate=false

1. Loads the study `sweep.study` from `sweep.storage` and takes its best COMPLETE trial by the
   validation objective (`ids.tuning.study.champion`; ties: the lower validation loss, then the
   lower trial number).
2. Registers the trial's logged model (user attr `model_uri`) as a new version of
   `promote.model_name`, tagged with the study, storage, trial number, objective value, params
   and run id. Promoting the same trial again creates no new version: the version registered
   from the same training run (tag `ids.run_id`) is reused.
3. Points `promote.alias` (champion) at that version; the version that held it before gets
   `promote.previous_alias` (previous). Re-promoting the current champion moves nothing.
4. Unless `promote.evaluate=false`, re-evaluates the version on the study's test split, the
   first time that split is used, and tags the version with the test metrics and the
   evaluation run. The trial's data/model/trainer config comes from the config.yaml its run
   logged (`ids.experiment.lineage`), not from today's command line: sweep with data.split=chunks, then a
   plain `make promote` scores the chunked test split. A data setting on the command line that
   differs from the trial's is an error naming it.
"""

from __future__ import annotations

import json

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from ids import progress
from ids.config import ConfigError, validate
from ids.evaluation import scorecard
from ids.experiment import lineage
from ids.experiment.evaluate import evaluate
from ids.tracking import registry, store
from ids.tracking.redact import redact
from ids.tracking.registry import RegistryError
from ids.tuning.space import apply
from ids.tuning.study import champion, storage_for

REPORTED = ("f1", "mcc", "balanced_accuracy", "benign_recall", "false_alarm_rate", "pr_auc")


class PromoteError(RegistryError):
    """Nothing to promote (no storage, no such study, no completed trial, no logged model)."""


def existing_study(sweep_cfg) -> optuna.Study:
    """The existing study `sweep.study` (never a new one); PromoteError listing the studies
    there if absent."""
    url = str(sweep_cfg.storage)
    db = store.sqlite_path(url)
    if db is not None and not db.is_file():
        raise PromoteError(f"sweep.storage={url!r}: no Optuna storage at {db.resolve()}. Run "
                           "`make sweep` first, or set sweep.storage to the storage of the sweep")
    storage = storage_for(sweep_cfg)
    names = sorted(optuna.get_all_study_names(storage))
    name = str(sweep_cfg.study)
    if name not in names:
        raise PromoteError(f"no study {name!r} in sweep.storage={redact(url)}; the "
                           f"studies there: {names or 'none'}. Set sweep.study=<one of them>")
    return optuna.load_study(study_name=name, storage=storage)


def pick_trial(study: optuna.Study, number: int | None = None) -> optuna.trial.FrozenTrial:
    """The best COMPLETE trial, or the COMPLETE trial `number` when given."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        states = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        raise PromoteError(f"study {study.study_name!r} has no COMPLETE trial (trials: "
                           f"{states or 'none'}); run or resume the sweep (`make sweep`) until "
                           "one completes")
    if number is None:
        return champion(study)
    for t in complete:
        if t.number == int(number):
            return t
    raise PromoteError(f"trial {number} of study {study.study_name!r} is not COMPLETE or does "
                       f"not exist; COMPLETE trials: {[t.number for t in complete]}")


def _version_tags(cfg, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    tags = {"ids.study": study.study_name, "ids.storage": redact(str(cfg.sweep.storage)),
            "trial.number": str(trial.number), "trial.value": repr(float(trial.value)),
            "objective": f"val/{cfg.trainer.selection_metric}",
            "direction": study.direction.name.lower(),
            "ids.run_id": str(trial.user_attrs.get("run_id", "")),
            "params": json.dumps(trial.params, sort_keys=True, default=str)}
    for key in ("best_epoch", "threshold"):
        if key in trial.user_attrs:
            tags[key] = str(trial.user_attrs[key])
    tags.update({f"param.{k}": str(v) for k, v in trial.params.items()})
    return tags


def promote(cfg: DictConfig, trial: int | None = None, *,
            overrides: list[str] | None = None) -> dict:
    """Register the best (or the given) COMPLETE trial, move the aliases, evaluate on test.
    `overrides` (the command line's): a data setting there that differs from the trial's run
    is a ConfigError, raised before anything is registered."""
    validate(cfg)
    p = cfg.promote
    name, alias, prev = str(p.model_name), str(p.alias), str(p.previous_alias)
    if not name or not alias or alias == prev:
        raise ConfigError(f"promote.model_name and promote.alias must be set and promote.alias "
                          f"must differ from promote.previous_alias, but got "
                          f"(model_name={name!r}, alias={alias!r}, previous_alias={prev!r})")
    trial = p.get("trial") if trial is None else trial
    progress.step(f"reading study {cfg.sweep.study}")
    study = existing_study(cfg.sweep)
    best = pick_trial(study, trial)
    model_uri = best.user_attrs.get("model_uri")
    if not model_uri:
        raise PromoteError(f"trial {best.number} of study {study.study_name!r} has no logged "
                           "model (user attr model_uri): the sweep ran with tracking.enabled=false "
                           "or tracking.log_model=false, or the trial was not the study's best "
                           "when it finished (sweep.log_artifacts=best logs models for those "
                           "only; sweep.log_artifacts=all keeps every trial's). Resume it with "
                           "tracking on")
    client = registry.connect(cfg.tracking.uri)
    try:
        ref = registry.resolve_model(model_uri, client)
    except registry.ModelNotFound as exc:
        raise PromoteError(f"{exc} (trial {best.number} of study {study.study_name!r}: is "
                           "tracking.uri the store the sweep logged to?)") from exc
    trial_cfg = registry.logged_config(client, ref.run_id)
    if trial_cfg is not None:
        lineage.check(cfg, trial_cfg, overrides, f"trial {best.number} of {study.study_name!r}")
        ecfg = lineage.adopt(cfg, trial_cfg, groups=("data", "model", "trainer"),
                              overrides=overrides)
    else:  # a run without its config (older store): rebuild it from today's config
        ecfg = apply(cfg, best.params)
    tags = {**_version_tags(ecfg, study, best), "selection": "best" if trial is None else "manual",
            "config.source": "run" if trial_cfg is not None else "command line + trial params"}
    how = "Best COMPLETE trial" if trial is None else "Trial (chosen by hand)"
    description = (f"{how} {best.number} of Optuna study {study.study_name!r}: "
                   f"{tags['objective']} = {best.value:.6f}; params {best.params}")
    progress.step(f"registering trial {best.number} as {name}")
    version, created = registry.register(client, name, model_uri, ref, tags, description)
    before = registry.move_aliases(client, name, alias, prev, version)
    result = {"study": study.study_name, "trial": best.number, "value": best.value,
              "params": dict(best.params), "run_id": ref.run_id, "model_uri": model_uri,
              "name": name, "version": version, "created": created, "alias": alias,
              "previous_alias": prev, "alias_moved": before != version,
              "previous_version": before if before != version else None,
              "version_uri": f"models:/{name}/{version}"}
    if p.evaluate:
        progress.step(f"evaluating version {version} on the test split")
        ev = evaluate(ecfg, result["version_uri"],
                      tags={"ids.study": study.study_name, "trial.number": str(best.number)})
        for key in REPORTED:
            client.set_model_version_tag(name, version, f"test.{key}", str(ev["metrics"][key]))
            if key in ev["unseen_metrics"]:
                client.set_model_version_tag(name, version, f"test_unseen.{key}",
                                             str(ev["unseen_metrics"][key]))
        for key, value in scorecard.verdict_tags(ev["card"]).items():
            client.set_model_version_tag(name, version, key, value)
        if ev["run_id"]:
            client.set_model_version_tag(name, version, "evaluation.run_id", ev["run_id"])
        result["evaluation"] = ev
    return result


def summary_text(cfg, result: dict) -> str:
    obj = f"val/{cfg.trainer.selection_metric}"
    what = "registered as new version" if result["created"] else \
        "already registered (same training run): reusing version"
    alias, prev, v = result["alias"], result["previous_alias"], result["version"]
    if not result["alias_moved"]:
        moved = f"{alias} already points at v{v}: unchanged"
    elif result["previous_version"]:
        moved = f"{alias} -> v{v}, {prev} -> v{result['previous_version']}"
    else:
        moved = f"{alias} -> v{v} (the first {alias})"
    return "\n".join([
        f"study {result['study']!r}: trial {result['trial']} ({obj} = {result['value']:.4f}), "
        f"params {result['params']}",
        f"{result['name']}: {what} {v} (from {result['model_uri']}, run {result['run_id']})",
        f"aliases: {moved}"])
