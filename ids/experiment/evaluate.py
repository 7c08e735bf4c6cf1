"""Re-evaluate a logged or registered model on test data, with the baselines on the same flows.

    python -m ids.evaluate                                   # models:/ids-cnn-bilstm@champion
    python -m ids.evaluate model_uri=models:/ids-cnn-bilstm/3
    python -m ids.evaluate model_uri=runs:/<run id>/model data=nf_bot_iot data.path=/data/x.csv
    python -m ids.evaluate input=/data/NF-ToN-IoT.csv        # a whole other file as test data

Configured data (no `input`): the test split of the MODEL's own data config, read from the
config.yaml its training run logged (`ids.experiment.lineage`): the same split as in training. A data
setting on the command line that differs from the model's is an error naming the key and both
values; a data file whose content changed since training is an error too. The raw test flows
go through the MODEL's own preprocessor (fitted on its training split), and windows are built
within the split, zero-padded at its start, as in training. The baselines are
`ids.evaluation.baselines.split_baseline_scores` on the same flows.

`input=FILE`: the whole file is test data (Label required), windows run over the file in order.
The baselines are trained on the model's data config's train split (threshold tuned on its val
split), then score the file's flows through the configured data's preprocessor.

Both modes report all flows and the unseen ones (flows whose features do not occur in the
model's training split, `ids.data.copies`) with 95 % intervals and the paired verdict against
Extra-Trees (`ids.evaluation.scorecard`).

Logs an MLflow run (tags ids.role=evaluation, model_uri, registered model name/version) with
`test/<metric>` (also linked to the logged model), `test_unseen/<metric>`,
`baseline/test[_unseen]/<name>/<metric>`, `test_copies/*`, the Extra-Trees seed spread and
the error table (`errors/*`, errors.csv: `ids.evaluation.scorecard`), report.txt and plots, and
prints the report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ids import progress
from ids.config import baseline_seeds, cv_folds, validate
from ids.data.copies import copy_mask, overlap_stats, row_hashes, unseen_mask
from ids.data.flows import ATTACK, LABEL, DataError
from ids.data.folds import learnt_from
from ids.data.gaps import load_rows, read_flows
from ids.data.prepare import prepare
from ids.evaluation import scorecard
from ids.evaluation.baselines import (
    baseline_scores,
    learnt_baseline_scores,
    oof_baseline_scores,
)
from ids.evaluation.metrics import PAPER_METRICS, REPORT_METRICS
from ids.experiment import lineage
from ids.model.runtime import setup_runtime
from ids.tracking import registry, runpage


def _digest(df: pd.DataFrame) -> str:
    return hashlib.sha1(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
                        ).hexdigest()


def _test_split(cfg, scorer) -> dict:
    """Model scores, truth and baselines on the configured data's test split."""
    prepared = prepare(cfg.data, cache_dir=cfg.cache_dir)
    test = prepared.test
    ascending = np.argsort(test.rows, kind="stable")  # time order (NF-v3) is not file order
    raw = load_rows(cfg.data, test.rows[ascending])
    if not np.array_equal(ascending, np.arange(len(ascending))):
        back = np.empty_like(ascending)
        back[ascending] = np.arange(len(ascending))
        raw = raw.iloc[back]
    if not np.array_equal(raw[LABEL].to_numpy(np.float32), test.y):
        raise DataError("the data changed while it was read (test labels differ); rerun")
    folds = cv_folds(cfg)
    base = (learnt_baseline_scores(prepared, folds, "test", baseline_seeds(cfg),
                                   cfg.trainer.selection_metric) if cfg.trainer.baselines else {})
    info = prepared.info
    return {"scores": _scores(scorer, raw), "y": test.y,
            "attack": test.attack, "baselines": base, "baseline_note": None,
            "unseen": unseen_mask(learnt_from(prepared, folds), test),
            "overlap": info["overlap"]["test"],
            "rows": test.rows,
            "where": "test", "hash": info["hash"],
            "source": f"test split of {info.get('path') or info['source']} "
                      f"({info['n_flows']:,} flows, split={info['split']})",
            "dataset": f"{info['source']}-test", "path": info.get("path")}


def _scores(scorer, flows: pd.DataFrame) -> np.ndarray:
    """The model's scores of validated `flows` in their order: over the previous rows, or over
    each host's previous flows (a grouped model, from a fresh host state); a time-gap model's
    columns come with the flows (`load_rows`, `read_input`)."""
    state = scorer.host_state()
    flows, X = scorer.encode(flows, state)
    return scorer.score_flows(flows, X, state=state)


def read_input(path: str, time_gap: bool = False) -> pd.DataFrame:
    """The validated flows of an `input=` file (Label required): read before the model loads,
    so a bad file fails in a second; with the gap columns of a `data.time_gap` model (the
    file in time order, as in training)."""
    if not Path(path).expanduser().is_file():
        raise DataError(f"input={path}: no such file; point input at a NetFlow CSV, CSV.gz, zip "
                        "or parquet file with a Label column, or drop input= to evaluate on the "
                        "configured data's test split")
    return read_flows(path, require_label=True, time_gap=time_gap)


def _input_file(cfg, scorer, flows: pd.DataFrame) -> dict:
    """Model scores, truth and baselines on a whole file."""
    path = str(cfg.input)
    y, attack = flows[LABEL].to_numpy(np.float32), flows[ATTACK].to_numpy(object)
    base, note = {}, None
    unseen, stats = np.ones(len(y), dtype=bool), None
    try:
        prepared = prepare(cfg.data, cache_dir=cfg.cache_dir)  # the model's training data: copies, baselines
    except DataError as exc:
        prepared, note = None, ("copies of training flows and baselines skipped: the model's "
                                f"training data is not available ({exc})")
    cols = list(prepared.preprocessor.input_columns_) if prepared else []
    if prepared and all(c in flows.columns for c in cols):
        hashes = row_hashes(flows, cols)
        unseen = ~copy_mask(prepared.train.hashes, hashes)
        stats = overlap_stats(prepared.train.hashes, prepared.train.y, hashes, y)
    if prepared and cfg.trainer.baselines:
        try:
            Xb = prepared.preprocessor.transform(flows)
        except DataError as exc:
            note = f"baselines skipped: the configured data's features do not fit the file ({exc})"
        else:
            tr, va, metric = prepared.train, prepared.val, cfg.trainer.selection_metric
            src = prepared.info.get("path") or prepared.info["source"]
            if folds := cv_folds(cfg):
                base = oof_baseline_scores(prepared, folds, Xb, baseline_seeds(cfg), metric)
                note = (f"baselines: trained on train+val of {src} (the model's data config; "
                        "the model is a bag cross-validated on it), each threshold tuned on its "
                        "own out-of-fold scores, scored on this file")
            else:
                base = baseline_scores(tr.X, tr.y, Xb, baseline_seeds(cfg), X_val=va.X,
                                       y_val=va.y, metric=metric)
                note = (f"baselines: trained on the train split of {src} (the model's data "
                        "config), threshold tuned on its val split, scored on this file")
    return {"scores": _scores(scorer, flows), "y": y, "attack": attack,
            "baselines": base, "baseline_note": note, "where": "test", "hash": _digest(flows),
            "unseen": unseen, "overlap": stats, "rows": np.arange(len(y)),
            "source": f"{path} (whole file, {len(flows):,} flows)",
            "dataset": path.rsplit("/", 1)[-1], "path": path}


def evaluate(cfg: DictConfig, model_uri: str | None = None, *,
             tags: dict[str, str] | None = None, overrides: list[str] | None = None) -> dict:
    """Score `model_uri` (default `cfg.model_uri`, else models:/<promote.model_name>@<alias>) on
    its own data config's test split or on `cfg.input`; log an evaluation run; return metrics,
    baselines, run_id, report and the model reference. `overrides` (the command line's) name
    the data settings given explicitly: one that differs from the model's is a ConfigError."""
    validate(cfg)
    uri = model_uri or registry.default_model_uri(cfg)
    # models:/ and runs:/ need the store to exist; a model folder does not (the evaluation
    # run then creates the store if tracking is on).
    client = registry.connect(cfg.tracking.uri) if registry.needs_store(uri) else None
    ref = registry.resolve_model(uri, client)
    model_cfg = registry.logged_config(client, ref.run_id)
    notes = []
    if model_cfg is not None:
        lineage.check(cfg, model_cfg, overrides, f"model {ref.label}")
        cfg = lineage.adopt(cfg, model_cfg, overrides=overrides)
    else:
        notes.append("note: the model's training config is not in the store (no config.yaml "
                     "of its run): the data.* settings given here are used")
    if cfg.get("input"):
        progress.step(f"reading {cfg.input}")
    flows = (read_input(str(cfg.input), bool(cfg.data.get("time_gap", False)))
             if cfg.get("input") else None)
    setup_runtime(cfg.trainer)
    progress.step(f"loading {ref.label}")
    scorer = registry.load_scorer(ref)
    progress.step("scoring the flows and the baselines on " +
                  ("the file" if flows is not None else "the test split"))
    part = _input_file(cfg, scorer, flows) if flows is not None else _test_split(cfg, scorer)

    trained_on = registry.run_tag(client, ref.run_id, "data.hash") if client else None
    same_data = None if trained_on is None else trained_on == part["hash"]
    if same_data is False and not cfg.get("input"):
        raise DataError(f"the data at data.path (content hash {part['hash'][:12]}) is not the "
                        f"data model {ref.label} was trained on (hash {trained_on[:12]}): its "
                        "test split would hold the model's training flows. Restore the training "
                        "file, or score this file as a whole with input=...")
    notes += [n for n in (part["baseline_note"],) if n]
    if same_data is True and cfg.get("input"):
        notes.append("warning: this file is the data the model was trained on (same content "
                     "hash): its train and val flows are scored too, so the figures are optimistic")
    preds = {scorecard.MODEL: (part["scores"], scorer.threshold), **part["baselines"]}
    card = scorecard.build(part["y"], part["attack"], part["unseen"], preds, seed=int(cfg.seed))
    metrics = card["all"][scorecard.MODEL]
    base = {k: v for k, v in card["all"].items() if k != scorecard.MODEL}
    n, attacks = len(part["y"]), int(np.sum(part["y"]))
    tuned = (f"the out-of-fold scores of train+val, a bag of {cv_folds(cfg)} fold models"
             if cv_folds(cfg) else "val")
    title = (f"{part['source']}: {n:,} flows, {attacks:,} attack; model {ref.label} "
             f"(window {scorer.window}, its own threshold {scorer.threshold:.4f} tuned on {tuned})")
    report = "\n".join([scorecard.text(card, f"{ref.label} ({part['where']})",
                                       paper=cfg.get("paper"), rows=report_rows(metrics),
                                       overlap=part["overlap"], title=title), *notes])

    run_id = None
    if cfg.tracking.enabled:
        progress.step("logging the evaluation run")
        run_id = runpage.log_evaluation(cfg, ref, scorer, part, card, report, same_data,
                                         tags or {})
    return {"metrics": metrics, "baselines": base, "run_id": run_id,
            "unseen_metrics": card["unseen"][scorecard.MODEL], "card": card,
            "rows": part["rows"], "scores": part["scores"], "y": part["y"], "config": cfg,
            "report": report, "model_uri": uri, "model": ref, "threshold": scorer.threshold,
            "window": scorer.window, "n": n, "source": part["source"],
            "same_data_as_training": same_data}


def report_rows(metrics: dict) -> list[str | None]:
    """format_report's default rows, then the detection rate of every Attack category."""
    rest = [m for m in REPORT_METRICS if m not in PAPER_METRICS]
    rates = sorted(k for k in metrics if k.startswith("detection_rate/"))
    return [*PAPER_METRICS, None, *rest, *([None, *rates] if rates else [])]
