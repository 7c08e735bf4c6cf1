"""What a run's MLflow page shows: baselines once per data setting, and a one-line summary.

The MLflow UI (3.17) opens a run's "Model metrics" tab with one section per metric prefix,
sorted by name. A run therefore logs its per-epoch curves as `train/...` and `val/...`, the best
epoch's validation figures as `val_best/...` (after the curves), single numbers without a
prefix (`best_epoch`, `threshold`: the last section), and, in a sweep trial, no baselines: they
depend on the data only, so they go once to the study's parent run, which the trial names in
its tag `baselines.run_id`. A standalone run keeps its baselines (its report compares them).

`describe` writes the run's description (`mlflow.note.content`, shown on the run page) and a
`summary` tag (a column of the runs table), so the run list reads without opening each run.
"""

from __future__ import annotations

import hashlib

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ids.evaluation import plots, scorecard
from ids.tracking import store
from ids.tracking.redact import redact

# Confusion counts per epoch would be 5 more charts among the curves; the best epoch's are
# logged under val_best/ and every epoch's stay in the run's history record.
_NOT_CURVES = {"epoch", "fold", "val/n", "val/tn", "val/fp", "val/fn", "val/tp"}


def epoch_metrics(record: dict) -> dict:
    """The per-epoch curves of a record of `train.fit` (step = epoch)."""
    return {k: v for k, v in record.items() if k not in _NOT_CURVES}


def baselines_key(info: dict, split: str) -> str:
    """The data setting the baselines belong to: content hash, split scheme, scored split."""
    raw = f"{info.get('hash')}|{info.get('split')}|{split}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def log_baselines(base: dict[str, dict], split: str, info: dict,
                  parent_run_id: str | None) -> str | None:
    """Log `baseline/<split>/<name>/<metric>`: on the parent run (once per data setting) when
    there is one, else on the active run. Returns the run that holds them."""
    if not base:
        return None
    active = mlflow.active_run()
    if parent_run_id is None:
        for name, metrics in base.items():
            store.log_metrics(metrics, prefix=f"baseline/{split}/{name}/")
        return active.info.run_id if active else None
    key = baselines_key(info, split)
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    held = parent.data.tags.get("baselines.key")
    if held not in (None, key):  # the study mixes data settings: keep this one in the trial
        for name, metrics in base.items():
            store.log_metrics(metrics, prefix=f"baseline/{split}/{name}/")
        mlflow.set_tag("baselines.run_id", active.info.run_id)
        return active.info.run_id
    if held is None:
        # Two workers may both get here at the start of a study: they log the same values.
        client.set_tag(parent_run_id, "baselines.key", key)
        for name, metrics in base.items():
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and v == v:
                    client.log_metric(parent_run_id, f"baseline/{split}/{name}/{k}", float(v))
    mlflow.set_tag("baselines.run_id", parent_run_id)
    return parent_run_id


def summary_line(cfg, summary: dict) -> str:
    """Best epoch, threshold, validation value, test figure and, when the reports carry them,
    the copies / unseen shares; short enough for a column of the runs table."""
    metric = summary["selection_metric"]
    parts = [f"best epoch {summary['best_epoch']}/{summary['epochs_run']}"
             + (" (stopped early)" if summary.get("stopped_early") else ""),
             f"threshold {summary['threshold']:.4f}",
             f"val {metric} {summary['value']:.4f}"]
    test = summary.get("test")
    if test and metric in test:
        parts.append(f"test {metric} {test[metric]:.4f}")
    for where in ("val", "test"):  # shares added by the reports of other modules, if any
        for k, v in sorted((summary.get(where) or {}).items()):
            if ("copies" in k or "unseen" in k) and "share" in k and isinstance(v, float):
                parts.append(f"{where} {k} {v:.1%}")
    return "; ".join(parts)


def describe(cfg, summary: dict) -> None:
    """Run description (markdown, the run page's 'Description') and the `summary` tag."""
    line = summary_line(cfg, summary)
    base = summary.get("baselines") or {}
    metric = summary["selection_metric"]
    split = summary["report_split"]
    rows = [f"**{line}**", ""]
    figures = summary.get("test") or summary.get("val") or {}
    if base and metric in figures:
        rows.append(f"{split} {metric}: this run {figures[metric]:.4f}, "
                    + ", ".join(f"{n} {m.get(metric, float('nan')):.4f}" for n, m in base.items()))
        rows.append("")
    rows.append("Curves per epoch: `train/loss`, `val/loss`, `val/<metric>`, `val/threshold` "
                "(Model metrics tab). Best epoch: `val_best/*`. Full report: `report.txt`.")
    mlflow.set_tags({"summary": line[:5000], "mlflow.note.content": "\n".join(rows)[:5000]})


def _metric_dict(metrics: dict, prefix: str) -> dict[str, float]:
    """What `store.log_metrics` logs: finite numbers, spaces -> underscores."""
    return {(prefix + k).replace(" ", "_"): float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and v == v}


def log_evaluation(cfg, ref, scorer, part: dict, card: dict, report: str,
                   same_data: bool | None, tags: dict) -> str:
    """The evaluation run of `ids.experiment.evaluate`: params, config, dataset input, `test/*` linked to
    the logged model, the unseen/baseline/paired metrics, copy shares, report and plots."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    exp_id = store.configure(cfg.tracking)
    run_tags = {"ids.role": "evaluation", **ref.tags(), "eval.data": part["source"][:5000],
                "data.hash": part["hash"],
                "data.same_as_training": "unknown" if same_data is None else str(same_data).lower(),
                **scorecard.verdict_tags(card), **tags}
    metrics = card["all"][scorecard.MODEL]
    name = cfg.tracking.run_name or f"evaluate-{ref.label.replace(' ', '-')}"
    with store.start_run(exp_id, name, tags=run_tags) as run:
        params = {"model_uri": ref.uri, "input": cfg.get("input") or "", "threshold":
                  scorer.threshold, "window": scorer.window}
        params.update({f"model.{k}": v for k, v in scorer.model_cfg.items()})
        if not cfg.get("input") or cfg.trainer.baselines:
            params.update(store.flatten(OmegaConf.to_container(cfg.data, resolve=True),
                                           "data."))
        mlflow.log_params({k: redact(str(v))[:500] for k, v in params.items()})
        mlflow.log_text(store.config_yaml(cfg), "config.yaml")
        dataset = MetaDataset(source=HTTPDatasetSource(url=str(part["path"] or "synthetic://")),
                              name=part["dataset"], digest=part["hash"][:36])
        mlflow.log_input(dataset, context="evaluation")
        mlflow.log_metrics(_metric_dict(metrics, "test/"), model_id=ref.model_id,
                           dataset=dataset if ref.model_id else None)
        store.log_metrics({k: v for k, v in scorecard.mlflow_metrics(card).items()
                              if not k.startswith("test/")})
        if part["overlap"]:
            store.log_metrics(part["overlap"], prefix="test_copies/")
        mlflow.log_text(report, "report.txt")
        if (table := scorecard.error_csv(card)) is not None:
            mlflow.log_text(table, "errors.csv")
        if cfg.tracking.log_plots:
            store.log_figure(plots.plot_confusion(metrics["tn"], metrics["fp"],
                                                     metrics["fn"], metrics["tp"]),
                                "test_confusion")
            if 0 < metrics["tp"] + metrics["fn"] < metrics["n"]:  # both classes present
                store.log_figure(plots.plot_pr_curve(part["y"], part["scores"]),
                                    "test_pr_curve")
    return run.info.run_id
