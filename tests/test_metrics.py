"""Metrics, threshold search, baselines, the report table and the plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, matthews_corrcoef, roc_auc_score

from ids.evaluation import baselines as baselines_mod
from ids.evaluation.baselines import baselines
from ids.evaluation.metrics import (
    PAPER_METRICS,
    REPORT_METRICS,
    THRESHOLD_METRICS,
    ScoreError,
    best_threshold,
    compute_metrics,
    confusion,
    format_report,
    metrics_from_confusion,
    threshold_curve,
)

CONFUSION_KEYS = ["accuracy", "precision", "recall", "f1", "mcc", "balanced_accuracy",
                  "benign_recall", "false_alarm_rate"]


def labelled(tn: int, fp: int, fn: int, tp: int) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) arrays with exactly this confusion matrix."""
    y = np.array([0] * (tn + fp) + [1] * (fn + tp))
    pred = np.array([0] * tn + [1] * fp + [0] * fn + [1] * tp)
    return y, pred


def test_metrics_of_a_hand_made_confusion_matrix():
    tn, fp, fn, tp = 50, 10, 5, 935
    m = metrics_from_confusion(tn, fp, fn, tp)
    assert set(m) == set(CONFUSION_KEYS)
    assert m["accuracy"] == pytest.approx(985 / 1000)
    assert m["precision"] == pytest.approx(935 / 945)
    assert m["recall"] == pytest.approx(935 / 940)
    assert m["f1"] == pytest.approx(2 * 935 / (2 * 935 + 10 + 5))
    assert m["mcc"] == pytest.approx((935 * 50 - 10 * 5) / math.sqrt(945 * 940 * 60 * 55))
    assert m["mcc"] == pytest.approx(0.862542, abs=1e-6)
    assert m["benign_recall"] == pytest.approx(50 / 60)
    assert m["false_alarm_rate"] == pytest.approx(10 / 60)
    assert m["balanced_accuracy"] == pytest.approx((935 / 940 + 50 / 60) / 2)
    y, pred = labelled(tn, fp, fn, tp)
    assert confusion(y, pred) == (tn, fp, fn, tp)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))


@pytest.mark.parametrize(("counts", "expected"), [
    ((0, 0, 0, 0), dict.fromkeys(CONFUSION_KEYS, 0.0)),
    ((100, 0, 0, 0), {"precision": 0.0, "recall": 0.0, "f1": 0.0, "mcc": 0.0,  # no attacks
                      "accuracy": 1.0, "benign_recall": 1.0, "balanced_accuracy": 0.5}),
    ((0, 0, 0, 100), {"benign_recall": 0.0, "false_alarm_rate": 0.0, "mcc": 0.0, "f1": 1.0}),
    ((10, 0, 90, 0), {"precision": 0.0, "recall": 0.0, "f1": 0.0, "mcc": 0.0}),  # says benign
    ((0, 10, 0, 90), {"benign_recall": 0.0, "false_alarm_rate": 1.0, "mcc": 0.0}),  # all attack
])
def test_zero_division_gives_zero_not_nan(counts, expected):
    m = metrics_from_confusion(*counts)
    assert all(math.isfinite(v) for v in m.values())
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_compute_metrics_counts_rates_and_categories():
    y, pred = labelled(50, 10, 5, 935)
    scores = np.where(pred == 1, 0.8, 0.2)
    attack = np.array(["Benign"] * 60 + ["DoS"] * 500 + ["Theft"] * 440)
    m = compute_metrics(y, scores, 0.5, attack)
    assert set(REPORT_METRICS) <= set(m)
    assert (m["tn"], m["fp"], m["fn"], m["tp"], m["n"], m["threshold"]) == (50, 10, 5, 935,
                                                                            1000, 0.5)
    assert m["mcc"] == pytest.approx(metrics_from_confusion(50, 10, 5, 935)["mcc"])
    assert m["detection_rate/Benign"] == pytest.approx(m["false_alarm_rate"])
    assert m["detection_rate/DoS"] == pytest.approx(495 / 500)  # the 5 misses are DoS flows
    assert m["detection_rate/Theft"] == 1.0
    assert compute_metrics(y, scores, 0.8)["tp"] == 945 - 10  # score >= threshold is attack
    assert not any(k.startswith("detection_rate/") for k in compute_metrics(y, scores, 0.5))


def test_ranking_metrics_match_sklearn_and_survive_one_class_and_nan():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.random(500) + 0.5 * y
    m = compute_metrics(y, s, 0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s))
    for labels, pr_auc in ((np.ones(20), 1.0), (np.zeros(20), 0.0)):
        single = compute_metrics(labels, rng.random(20), 0.5)
        assert (single["roc_auc"], single["pr_auc"]) == (0.5, pr_auc)
    s[:3] = np.inf
    assert all(math.isfinite(v) for v in compute_metrics(y, s, 0.5).values())


def test_nan_scores_are_an_error_not_benign():
    """A NaN score is neither class: counting it as benign (NaN >= t is False) hid a broken
    model; the error says how many and where."""
    s = np.array([0.2, 0.9, np.nan, 0.7, np.nan])
    for call in (lambda: compute_metrics([0, 1, 1, 1, 0], s, 0.5),
                 lambda: best_threshold([0, 1, 1, 1, 0], s)):
        with pytest.raises(ScoreError, match=r"2 of 5 scores are NaN \(the first at flow 2\)"):
            call()


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="same length"):
        compute_metrics([0, 1, 1], [0.1, 0.9], 0.5)
    with pytest.raises(ValueError, match="0 \\(benign\\) or 1"):
        confusion([0, 2], [0, 1])
    with pytest.raises(ValueError, match="metric must be one of"):
        threshold_curve([0, 1], [0.2, 0.7], "roc_auc")
    with pytest.raises(ValueError, match="NaN"):
        best_threshold([0, 1], [np.nan, 0.7])


def test_best_threshold_on_hand_made_scores():
    y = [0, 0, 1, 0, 1, 1]
    s = [0.1, 0.2, 0.3, 0.4, 0.6, 0.9]
    thresholds, f1 = threshold_curve(y, s, "f1")
    np.testing.assert_allclose(thresholds, s)
    np.testing.assert_allclose(f1, [6 / 9, 6 / 8, 6 / 7, 4 / 6, 4 / 5, 2 / 4])
    assert best_threshold(y, s, "f1") == pytest.approx((0.3, 6 / 7))
    assert best_threshold(y, s, "precision") == pytest.approx((0.6, 1.0))  # lowest of 0.6, 0.9


def test_ties_go_to_the_lowest_threshold_and_equal_scores_form_one_candidate():
    assert best_threshold([1, 0, 1], [0.2, 0.5, 0.8], "accuracy") == pytest.approx((0.2, 2 / 3))
    thresholds, _ = threshold_curve([0, 1, 1, 0, 1], [0.3, 0.7, 0.7, 0.3, 0.9])
    np.testing.assert_allclose(thresholds, [0.3, 0.7, 0.9])


def test_threshold_curve_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.random(400) * 0.7 + 0.3 * y, 2)  # rounded: many tied scores
    curves = {metric: threshold_curve(y, s, metric) for metric in THRESHOLD_METRICS}
    thresholds = np.unique(s)
    for i, t in enumerate(thresholds):
        expected = compute_metrics(y, s, t)
        for metric, (ts, values) in curves.items():
            assert ts[i] == t
            assert values[i] == pytest.approx(expected[metric], abs=1e-12), (metric, t)


def test_threshold_curve_covers_every_unique_score_of_a_million():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1_000_000)
    s = rng.random(1_000_000).astype(np.float32)
    thresholds, values = threshold_curve(y, s, "mcc")  # vectorised: ~0.3 s (speed: make bench)
    assert len(thresholds) == len(np.unique(s)) == len(values)


def separable(n: int, seed: int, benign: float = 0.2):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) > benign).astype(int)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    X[:, 0] += 4 * y
    return X, y


def test_baselines_on_a_separable_toy_problem():
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = (separable(1500, s) for s in (0, 1, 2))
    attack = np.where(y_te == 1, "DoS", "Benign")
    out = baselines(X_tr, y_tr, X_te, y_te, attack, seed=0, X_val=X_va, y_val=y_va)
    flat = out["all_attack"]
    assert (flat["recall"], flat["benign_recall"], flat["mcc"]) == (1.0, 0.0, 0.0)
    assert flat["detection_rate/Benign"] == 1.0
    trees = out["extra_trees"]
    assert trees["mcc"] > 0.9
    assert trees["f1"] > flat["f1"]
    assert 0 < trees["threshold"] < 1  # tuned on validation
    assert baselines(X_tr, y_tr, X_te, y_te)["extra_trees"]["threshold"] == 0.5


def test_baselines_subsample_deterministically_and_take_the_last_flow_of_windows(monkeypatch):
    monkeypatch.setattr(baselines_mod, "BASELINE_MAX_TRAIN_ROWS", 300)
    X_tr, y_tr = separable(2000, 3)
    X_te, y_te = separable(500, 4)
    windows = np.stack([np.zeros_like(X_te), X_te], axis=1)  # (N, T=2, F): last flow labelled
    first = baselines(X_tr, y_tr, windows, y_te, seed=5)["extra_trees"]
    again = baselines(X_tr, y_tr, X_te, y_te, seed=5)["extra_trees"]
    assert first == again
    assert first["mcc"] > 0.9


def test_a_forest_fitted_on_a_split_gathers_only_its_sample_and_equals_the_array_fit(monkeypatch):
    from ids.data.splits import Split

    monkeypatch.setattr(baselines_mod, "BASELINE_MAX_TRAIN_ROWS", 300)
    X_tr, y_tr = separable(2000, 3)
    X_te, _ = separable(500, 4)
    split = Split(X_tr.astype(np.float32), y_tr.astype(np.float32), np.zeros(len(y_tr), object),
                  np.arange(len(y_tr)))
    on_split = baselines_mod.fit_extra_trees(split, split.y, 7)
    on_array = baselines_mod.fit_extra_trees(split.X, split.y, 7)
    np.testing.assert_array_equal(baselines_mod.attack_proba(on_split, X_te),
                                  baselines_mod.attack_proba(on_array, X_te))


def test_format_report_lists_every_metric_and_column():
    run = compute_metrics(*labelled(50, 10, 5, 935), 0.5)
    columns = {"paper (claimed)": {"accuracy": 0.9974, "f1": 0.9987}, "this run": run,
               "all-attack": {}}
    text = format_report(columns, title="NF-BoT-IoT test split")
    lines = text.splitlines()
    assert lines[0] == "NF-BoT-IoT test split"
    for name in [*REPORT_METRICS, *columns]:
        assert name in text
    rows = [line.split()[0] for line in lines[3:] if line.strip()]
    assert rows == REPORT_METRICS  # paper metrics first, then the rest
    assert "" in lines[3:]  # blank separator after the paper metrics
    assert lines[3 + len(PAPER_METRICS)] == ""
    assert f"{run['mcc']:.4f}" in text and "0.9974" in text
    mcc_row = next(line for line in lines if line.startswith("mcc"))
    assert mcc_row.split()[1] == "-"  # the paper gives no MCC
    assert format_report(columns, metrics=["f1"]).count("\n") == 2  # header, rule, one row


def test_plots_return_figures(tmp_path):
    from ids.evaluation import plots

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    figures = [
        plots.plot_confusion(50, 10, 5, 935),
        plots.plot_pr_curve(y, s),
        plots.plot_threshold_curve(y, s, "mcc", chosen_threshold=0.6),
        plots.plot_history([{"epoch": 1, "train/loss": 0.6}, {"epoch": 2, "train/loss": 0.4}],
                           ["train/loss", "val/loss"]),
    ]
    for i, fig in enumerate(figures):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 0
