"""One training run: `python -m ids.run [overrides]`, or `train(cfg)` from Python.

Prepares the data (cached per process), trains with a validation-tuned threshold, scores the
test split once (unless `trainer.evaluate_test=false`, as in sweep trials), scores the baselines
on the same flows, logs everything to MLflow and prints the report.

    python -m ids.run                                   # synthetic data, default model
    python -m ids.run model.kernel_size=5 data.window=20
    python -m ids.run +experiment=paper data.path=/data/NF-BoT-IoT.csv
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext

from omegaconf import DictConfig

from ids import progress
from ids.artifact import bounds
from ids.artifact.scorer import Scorer
from ids.config import baseline_seeds, cv_folds, validate
from ids.data.copies import overlap_line, unseen_mask
from ids.data.folds import learnt_from
from ids.data.prepare import prepare, time_ranges
from ids.data.splits import Prepared
from ids.data.windows import check_window
from ids.evaluation import plots, scorecard
from ids.evaluation.baselines import cv_baselines, learnt_baseline_scores, split_baselines
from ids.evaluation.metrics import compute_metrics, format_report
from ids.model.budget import Budget, part
from ids.model.crossval import CrossResult, cross_fit
from ids.model.feed import score
from ids.model.fit import FitResult, fit
from ids.model.runtime import setup_runtime
from ids.tracking import models, runpage, store


def report_columns(cfg, model_metrics: dict, base: dict, label: str) -> dict[str, dict]:
    cols: dict[str, dict] = {}
    if cfg.get("paper"):
        cols["paper (claimed)"] = dict(cfg.paper)
    cols[label] = model_metrics
    cols["all-attack"] = base.get("all_attack", {})
    cols["extra-trees"] = base.get("extra_trees", {})
    return cols


def train(
    cfg: DictConfig,
    *,
    prepared: Prepared | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    parent_run_id: str | None = None,
    tags: dict | None = None,
    workers: int = 1,
    budget: Budget | None = None,
    keep_artifacts: Callable[[dict], bool] | None = None,
) -> dict:
    """Run one experiment end to end and return its summary (metrics, run id, model URI);
    `budget` gets the seconds of `fit`'s parts and "val" for the final figures (what is left
    of the call is MLflow: runs, metrics, plots, the logged model). `keep_artifacts(summary)`
    False: no plots and no model for this run (a sweep keeps them for its best trials only)."""
    validate(cfg)
    bounds.check_training(cfg)  # before the data: the layer sizes alone may not fit
    if prepared is None:
        progress.step(f"preparing the data ({cfg.data.source})")
        prepared = prepare(cfg.data, cache_dir=cfg.cache_dir)
    check_window(cfg.data.window, prepared.sizes())
    bounds.check_training(cfg, len(prepared.feature_names))
    setup_runtime(cfg.trainer, workers)
    enabled = bool(cfg.tracking.enabled)
    exp_id = store.configure(cfg.tracking) if enabled else None
    ctx = (store.start_run(exp_id, cfg.tracking.run_name, parent_run_id, tags) if enabled
           else nullcontext())
    started = time.perf_counter()
    # The checkpoint lives as long as the run unless trainer.checkpoint_dir keeps it: the model
    # that matters is logged to MLflow.
    with ctx as run, tempfile.TemporaryDirectory(prefix="ids-ckpt-") as scratch:
        if enabled:
            store.log_config(cfg)
            store.log_data(prepared.info)

        folds, epochs = cv_folds(cfg), int(cfg.trainer.epochs)
        bar = progress.TrainingProgress(epochs * max(folds, 1), cfg.trainer.selection_metric,
                                        quiet=bool(cfg.quiet))

        def epoch_hook(epoch: int, record: dict) -> None:
            fold = record.get("fold")
            if enabled:  # a fold's curves: fold<f>/train/loss, fold<f>/val/mcc, ...
                prefix = f"fold{fold}/" if fold else ""
                store.log_metrics(runpage.epoch_metrics(record), prefix=prefix, step=epoch)
            bar.on_epoch(epoch + epochs * (fold - 1) if fold else epoch, record)
            if on_epoch is not None:
                on_epoch(epoch, record)

        with bar:
            result = (cross_fit if folds else fit)(
                cfg, prepared, on_epoch=epoch_hook,
                checkpoint_dir=cfg.trainer.checkpoint_dir or scratch,
                on_batch=bar.on_batch, budget=budget)
        progress.step("scoring and logging the results")
        with part(budget, "val"):
            summary = summarise(cfg, prepared, result)
        summary["seconds"] = time.perf_counter() - started
        if enabled:
            summary["run_id"] = run.info.run_id
            keep = keep_artifacts is None or keep_artifacts(summary)
            summary["model_uri"] = log_results(cfg, prepared, result, summary, parent_run_id,
                                               artifacts=keep)
    return summary


def summarise(cfg, prepared: Prepared, result: FitResult) -> dict:
    """Validation figures of the best epoch (cross-validated: of the out-of-fold scores of
    train+val), and the test figures when the run may use test."""
    folds = cv_folds(cfg)
    summary = {
        "best_epoch": result.best_epoch,
        "threshold": result.threshold,
        "value": result.best_value,
        "selection_metric": cfg.trainer.selection_metric,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val": result.val_metrics,
        "val_loss": float(result.val_loss),
        "cv_folds": folds,
    }
    split = "test" if cfg.trainer.evaluate_test else "val"
    target = prepared.split(split)
    summary["report_split"] = split
    summary["overlap"] = prepared.info.get("overlap", {}).get(split)
    summary["overlap_val"] = prepared.info.get("overlap", {}).get("val")
    if prepared.info.get("time_range"):  # NF-v3: each split's period
        summary["time_ranges"] = time_ranges(prepared.info)
    seed, metric = int(cfg.seed), cfg.trainer.selection_metric
    if split == "test":
        scores = score(result.model, target, int(cfg.data.window),
                       int(cfg.trainer.eval_batch_size), str(cfg.trainer.distinct))
        preds = {scorecard.MODEL: (scores, result.threshold)}
        if cfg.trainer.baselines:
            preds.update(learnt_baseline_scores(prepared, folds, split, baseline_seeds(cfg),
                                                metric))
        card = scorecard.build(target.y, target.attack, unseen_mask(learnt_from(prepared, folds),
                                                                    target),
                               preds, seed=seed, split=split)
        summary["card"] = card
        summary["test"] = card["all"][scorecard.MODEL]
        summary["test_unseen"] = card["unseen"][scorecard.MODEL]
        summary["test_scores"] = scores
        summary["baselines"] = {k: v for k, v in card["all"].items() if k != scorecard.MODEL}
        return summary
    if folds:  # out-of-fold: each flow's own fold model never saw it; the forests alike
        summary["val_unseen"] = {}
        summary["baselines"] = cv_baselines(prepared, folds, seed, metric) \
            if cfg.trainer.baselines else {}
        return summary
    unseen = unseen_mask(prepared.train, target)
    summary["val_unseen"] = (compute_metrics(target.y[unseen], result.val_scores[unseen],
                                             result.threshold) if unseen.any() else {})
    summary["baselines"] = split_baselines(prepared, split, seed, metric) \
        if cfg.trainer.baselines else {}
    return summary


def log_results(cfg, prepared: Prepared, result: FitResult, summary: dict,
                parent_run_id: str | None = None, artifacts: bool = True) -> str | None:
    """Final metrics, baselines, plots and the pyfunc model of a finished run (plots and model
    only with `artifacts` and tracking.log_plots / log_model).

    The best epoch's validation figures go under `val_best/`, which the MLflow UI lists after
    the per-epoch `train/` and `val/` curves (its sections are sorted by name). A sweep trial's
    baselines go once to the study's parent run (see `runpage.log_baselines`)."""
    split = summary["report_split"]
    store.log_metrics({"best_epoch": result.best_epoch, "threshold": result.threshold})
    store.log_metrics(result.val_metrics, prefix="val_best/")
    for name, stats in prepared.info.get("overlap", {}).items():
        if name == "val" or split == "test":
            store.log_metrics(stats, prefix=f"{name}_copies/")
    if "card" in summary:  # test: model and baselines on all and unseen flows, with intervals
        store.log_metrics(scorecard.mlflow_metrics(summary["card"]))
        store.set_tags(scorecard.verdict_tags(summary["card"]))
        if (table := scorecard.error_csv(summary["card"])) is not None:
            store.log_text(table, "errors.csv")
    else:
        store.log_metrics(summary.get("val_unseen", {}), prefix="val_unseen/")
        runpage.log_baselines(summary["baselines"], split, prepared.info, parent_run_id)
    runpage.describe(cfg, summary)
    store.log_text(report_text(cfg, summary), "report.txt")
    if artifacts and cfg.tracking.log_plots:
        log_plots(cfg, prepared, result, summary)
    if not (artifacts and cfg.tracking.log_model):
        return None
    model_cfg = dict(cfg.model)
    if isinstance(result, CrossResult):
        model_cfg["members"] = len(result.folds)
    scorer = Scorer(prepared.preprocessor, model_cfg, int(cfg.data.window),
                    float(result.threshold), result.checkpoint, int(cfg.trainer.eval_batch_size),
                    store.model_config(cfg))
    return models.log_scorer(scorer)


def log_plots(cfg, prepared: Prepared, result: FitResult, summary: dict) -> None:
    metric = cfg.trainer.selection_metric
    y_val = result.val_y if result.val_y is not None else prepared.val.y
    store.log_figure(plots.plot_history(result.history, ["train/loss", "val/loss"]), "loss")
    store.log_figure(plots.plot_history(
        result.history, [f"val/{m}" for m in ("f1", "mcc", "balanced_accuracy", "benign_recall")]),
        "val_metrics")
    store.log_figure(plots.plot_threshold_curve(y_val, result.val_scores, metric,
                                                   result.threshold), "val_threshold")
    store.log_figure(plots.plot_pr_curve(y_val, result.val_scores), "val_pr_curve")
    m = summary.get("test", result.val_metrics)
    store.log_figure(plots.plot_confusion(m["tn"], m["fp"], m["fn"], m["tp"]),
                        f"{summary['report_split']}_confusion")
    if "test" in summary:
        store.log_figure(plots.plot_pr_curve(prepared.test.y, summary["test_scores"]),
                            "test_pr_curve")


def report_text(cfg, summary: dict) -> str:
    split = summary["report_split"]
    metrics = summary.get("test", summary["val"])
    title = (f"{split} split, best epoch {summary['best_epoch']}/{summary['epochs_run']}, "
             f"threshold {summary['threshold']:.4f} (tuned on val for "
             f"{summary['selection_metric']})")
    if summary.get("cv_folds"):
        title = (f"{split} split, the bag of {summary['cv_folds']} fold models (median best "
                 f"epoch {summary['best_epoch']}), threshold {summary['threshold']:.4f} (tuned "
                 f"on the out-of-fold scores of train+val for {summary['selection_metric']})")
    if summary.get("time_ranges"):
        title += f"\n{summary['time_ranges']}"
    if "card" in summary:
        text = scorecard.text(summary["card"], f"this run ({split})", paper=cfg.get("paper"),
                              overlap=summary.get("overlap"), title=title)
        if summary.get("overlap_val"):  # where the threshold and best epoch were chosen
            head, _, rest = text.partition("\n\n")
            text = f"{head}\n{overlap_line('val flows', summary['overlap_val'])}\n\n{rest}"
        return text
    cols = report_columns(cfg, metrics, summary["baselines"], f"this run ({split})")
    lines = [format_report(cols, title=title)]
    if summary.get("overlap"):
        lines.append(overlap_line(f"{split} flows", summary["overlap"]))
    unseen = summary.get("val_unseen")
    if unseen:
        lines.append(f"this run on the unseen {split} flows: MCC {unseen['mcc']:.4f}, benign "
                     f"recall {unseen['benign_recall']:.4f} ({unseen['tn'] + unseen['fp']:.0f} "
                     "benign)")
    return "\n".join(lines)
