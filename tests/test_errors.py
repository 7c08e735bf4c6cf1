"""Issue 38: why the model loses to Extra-Trees, in every report. The error table (the flows one
gets wrong and the other right, per category and copies / unseen) adds up to both models'
confusion matrices; the forest is fitted with several seeds and the report stands on the
median draw, with the verdict against each."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import ExtraTreesClassifier

from ids.config import ConfigError, baseline_seeds, compose, validate
from ids.data.copies import unseen_mask
from ids.data.prepare import prepare
from ids.evaluation import errors, scorecard, spread
from ids.evaluation.baselines import (
    attack_proba,
    extra_trees_draws,
    fit_extra_trees,
    split_baseline_scores,
)
from ids.evaluation.metrics import confusion

CATEGORIES = ("Benign", "DoS", "DDoS", "Reconnaissance", "Theft")


def _confusion(m: dict) -> tuple[int, int, int, int]:
    return int(m["tn"]), int(m["fp"]), int(m["fn"]), int(m["tp"])


def assert_adds_up(card: dict) -> None:
    """The error table gives back both models' confusion matrices, on all and unseen flows."""
    rows = card["errors"]
    for part, only in (("all", None), ("unseen", "unseen")):
        if not card["counts"][part]["n"]:
            continue
        got = errors.confusions(rows, only)
        assert got["model"] == _confusion(card[part][scorecard.MODEL]), part
        assert got["extra_trees"] == _confusion(card[part]["extra_trees"]), part
        assert errors.totals(rows, only)["n"] == card["counts"][part]["n"]


@pytest.fixture(scope="module")
def real_card(tiny_model):
    """A real model's test scores (the session's tiny model) against three real forests."""
    _, scorer, cfg = tiny_model
    prepared = prepare(cfg.data)
    test = prepared.test
    scores = scorer.score_matrix(test.X)
    preds = {scorecard.MODEL: (scores, scorer.threshold),
             **split_baseline_scores(prepared, "test", [0, 1, 2], "mcc")}
    card = scorecard.build(test.y, test.attack, unseen_mask(prepared.train, test), preds)
    return card, preds, test


def test_the_error_table_adds_up_to_both_confusion_matrices_on_real_scores(real_card):
    card, preds, test = real_card
    assert_adds_up(card)
    rows = card["errors"]
    assert {r["part"] for r in rows} <= set(errors.PARTS)
    assert {r["category"] for r in rows} == set(np.unique(test.attack.astype(str)))
    assert all(r["label"] == ("benign" if r["category"] == "Benign" else "attack") for r in rows)
    # The forest of the table is the median draw, the one the extra-trees column shows.
    s, t = preds["extra_trees"][card["spread"]["median_seed"]]
    assert errors.confusions(rows)["extra_trees"] == confusion(test.y, s >= t)
    assert sum(errors.totals(rows)[k] for k in errors.OUTCOMES) == len(test.y)


@settings(max_examples=150, deadline=None, database=None)
@given(st.integers(1, 400), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_the_error_table_adds_up_whatever_the_flows(n, seed, benign_share):
    """Any labels, categories (an attack category may hold benign flows too), unseen mask and
    decisions: the table gives back both confusion matrices, on all and on unseen flows."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) >= benign_share).astype(int)
    attack = rng.choice(CATEGORIES, n)
    unseen = rng.random(n) < rng.random()
    model, forest = (rng.random(n) < rng.random()).astype(int), rng.integers(0, 2, n)
    rows = errors.table(y, attack, unseen, model, forest)
    for only, mask in ((None, np.ones(n, bool)), ("unseen", unseen)):
        got = errors.confusions(rows, only)
        want = {"model": (0, 0, 0, 0), "extra_trees": (0, 0, 0, 0)} if not mask.any() else {
            "model": confusion(y[mask], model[mask]),
            "extra_trees": confusion(y[mask], forest[mask])}
        assert got == want, only
        assert sum(errors.totals(rows, only)[k] for k in errors.OUTCOMES) == mask.sum()
    flat = errors.mlflow_metrics(rows)
    assert flat["errors/test/n"] == n
    assert flat["errors/test/model_only"] + flat["errors/test/both_wrong"] == (model != y).sum()
    assert (flat["errors/test_unseen/extra_trees_only"] + flat["errors/test_unseen/both_wrong"]
            == (forest != y)[unseen].sum())
    assert flat["errors/test/model_only"] == (flat["errors/test/model_only_benign"]
                                              + flat["errors/test/model_only_attack"])


def test_hand_made_table_csv_and_summary():
    #                 b  b  b  b  D  D  D  R  R
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    attack = np.array(["Benign"] * 4 + ["DoS"] * 3 + ["Reconnaissance"] * 2)
    unseen = np.array([1, 1, 0, 0, 1, 0, 0, 1, 1], bool)
    model = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0])  # 2 false alarms (unseen), 1 DoS and 1 Recon missed
    forest = np.array([0, 0, 1, 0, 1, 1, 1, 1, 0])  # 1 false alarm (a copy), 1 Recon missed
    rows = errors.table(y, attack, unseen, model, forest)
    by = {(r["category"], r["part"]): r for r in rows}
    assert by[("Benign", "unseen")] == {"category": "Benign", "label": "benign", "part": "unseen",
                                        "n": 2, "both_right": 0, "model_only": 2,
                                        "extra_trees_only": 0, "both_wrong": 0}
    assert by[("Benign", "copies")]["extra_trees_only"] == 1
    assert by[("DoS", "unseen")]["model_only"] == 1
    assert by[("Reconnaissance", "unseen")]["both_wrong"] == 1
    assert [r["label"] for r in rows] == ["benign"] * 2 + ["attack"] * 3  # benign first
    assert errors.confusions(rows)["model"] == confusion(y, model) == (2, 2, 2, 3)
    assert errors.confusions(rows)["extra_trees"] == confusion(y, forest) == (3, 1, 1, 4)
    csv = errors.to_csv(rows).splitlines()
    assert csv[0] == ",".join(errors.COLUMNS) and len(csv) == 1 + len(rows)
    assert "Benign,benign,unseen,2,0,2,0,0" in csv
    text = "\n".join(errors.summary(rows, "test", "extra-trees (seed 1)"))
    assert "differ on the 9 test flows (both right on 4;" in text
    assert ("model wrong, extra-trees right: 3 flows: 2 Benign (false alarms), 1 DoS (missed); "
            "3 of them unseen") in text
    assert "extra-trees wrong, model right: 1 flow: 1 Benign (false alarm); 0 of them unseen" in text
    assert "both wrong: 1 flow: 1 Reconnaissance (missed); 1 of them unseen" in text
    with pytest.raises(ValueError, match="same length"):
        errors.table(y, attack, unseen, model[:-1], forest)


def test_the_card_stands_on_the_median_draw_and_gives_the_verdict_against_each():
    rng = np.random.default_rng(3)
    y = (rng.random(3000) > 0.1).astype(int)
    attack = np.where(y == 1, "DoS", "Benign")
    unseen = rng.random(len(y)) < 0.5

    def noisy(p: float) -> np.ndarray:
        return np.where(rng.random(len(y)) < p, y, 1 - y).astype(float)

    model = noisy(0.93)
    draws = {7: (noisy(0.97), 0.5), 8: (noisy(0.90), 0.5), 9: (noisy(0.94), 0.5)}  # mcc 1st, 3rd, 2nd
    card = scorecard.build(y, attack, unseen, {scorecard.MODEL: (model, 0.5),
                                               "extra_trees": draws})
    sp = card["spread"]
    assert sp["seeds"] == [7, 8, 9] and sp["median_seed"] == 9
    assert_adds_up(card)
    mccs = {s: sp["all"][s]["mcc"] for s in sp["seeds"]}
    assert sorted(mccs.values())[1] == mccs[9] == card["all"]["extra_trees"]["mcc"]
    # The headline verdict is the median draw's; each draw has its own.
    assert card["paired"]["all"] == sp["all"][9]["paired"]
    verdicts = {s: sp["all"][s]["paired"]["verdict"] for s in sp["seeds"]}
    assert verdicts[7] == "worse" and verdicts[8] == "better"
    flat = scorecard.mlflow_metrics(card)
    assert flat["baseline/test/extra_trees_seeds/median_seed"] == 9
    assert flat["baseline/test/extra_trees_seeds/mcc_min"] == min(mccs.values())
    assert flat["baseline/test/extra_trees_seeds/mcc_max"] == max(mccs.values())
    assert flat["baseline/test/extra_trees_seed_8/mcc"] == mccs[8]
    assert flat["paired/test/seed_7/mcc_minus_extra_trees_ci_high"] < 0
    assert flat["baseline/test/extra_trees/mcc"] == mccs[9]  # today's key: the median draw
    tags = scorecard.verdict_tags(card)
    assert tags["verdict.test.vs_extra_trees"] == verdicts[9]
    assert tags["verdict.test.vs_extra_trees.seed_7"] == "worse"
    assert tags["verdict.test_unseen.vs_extra_trees.seed_8"] == sp["unseen"][8]["paired"][
        "verdict"]
    text = scorecard.text(card, "this run (test)")
    lo, hi = min(mccs.values()), max(mccs.values())
    assert (f"extra-trees over 3 seeds, MCC on all test flows: median {mccs[9]:.3f} (seed 9), "
            f"{lo:.3f}-{hi:.3f}") in text
    assert "use seed 9's forest, the median draw" in text
    assert "seed 7 " in text and "the verdict depends on the draw" in text
    assert "where the model and extra-trees (seed 9) differ" in text
    # An even count takes the lower middle draw; one draw is the card of a single forest.
    assert spread.median_seed(y, {7: draws[7], 8: draws[8]}) == 8
    one = scorecard.build(y, attack, unseen, {scorecard.MODEL: (model, 0.5),
                                              "extra_trees": {7: draws[7]}})
    plain = scorecard.build(y, attack, unseen, {scorecard.MODEL: (model, 0.5),
                                                "extra_trees": draws[7]})
    assert one["all"] == plain["all"] and one["paired"] == plain["paired"]
    assert "one forest (seed 7)" in scorecard.text(one, "x")


def test_too_few_unseen_flows_of_a_class_give_no_seed_spread_of_mcc():
    y = np.r_[np.zeros(40), np.ones(400)].astype(int)
    unseen = np.r_[np.ones(10), np.zeros(30), np.ones(100), np.zeros(300)].astype(bool)
    preds = {scorecard.MODEL: (y.astype(float), 0.5),
             "extra_trees": {0: (y.astype(float), 0.5), 1: (1.0 - y, 0.5)}}
    text = scorecard.text(scorecard.build(y, np.where(y, "DoS", "Benign"), unseen, preds), "m")
    assert "extra-trees over 2 seeds, MCC on unseen test flows: n/a (10 benign)" in text


def test_a_forest_of_the_distinct_flows_is_the_forest_of_all_flows():
    """Fitting on distinct (features, label) rows weighted by their copies gives the scores of
    the forest fitted on every flow (NF-BoT-IoT: 70,000 training flows are 6,033 such rows)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 6, (300, 4)).astype(np.float32)
    y_base = (base[:, 0] + rng.random(300) > 2.5).astype(int)
    pick = rng.integers(0, 300, 3000)  # many copies, some with the other label
    X, y = base[pick], np.where(rng.random(3000) < 0.03, 1 - y_base[pick], y_base[pick])
    X_test = rng.integers(0, 6, (500, 4)).astype(np.float32)
    full = ExtraTreesClassifier(n_estimators=100, n_jobs=-1, random_state=4).fit(X, y)
    ours = fit_extra_trees(X, y, 4)
    distinct = len(np.unique(np.column_stack([X, y]), axis=0))
    assert distinct < 700 and ours.estimators_[0].tree_.n_node_samples[0] == distinct
    np.testing.assert_allclose(attack_proba(ours, X_test), full.predict_proba(X_test)[:, 1],
                               atol=1e-9)


def test_the_forests_take_their_flows_seeds_and_thresholds_from_the_caller():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((600, 3)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.standard_normal(600) > 0).astype(int)
    target, X, y = X[:100], X[100:], y[100:]  # scored flows the forests never saw
    given_t = extra_trees_draws(X, y, target, [3, 5], thresholds={3: 0.2, 5: 0.8})
    assert list(given_t) == [3, 5] and [t for _, t in given_t.values()] == [0.2, 0.8]
    tuned = extra_trees_draws(X[:300], y[:300], target, [3], X_threshold=X[300:],
                              y_threshold=y[300:], metric="mcc")
    assert 0 < tuned[3][1] < 1 and len(tuned[3][0]) == 100
    assert extra_trees_draws(X, y, target, [3])[3][1] == 0.5
    np.testing.assert_array_equal(given_t[3][0], extra_trees_draws(X, y, target, [3])[3][0])
    assert not np.array_equal(given_t[3][0], given_t[5][0])  # another seed, another forest


def test_baseline_seeds_is_a_checked_setting():
    cfg = compose(["seed=4", "trainer.baseline_seeds=3"])
    assert baseline_seeds(cfg) == [4, 5, 6]
    assert baseline_seeds(compose(["trainer.baseline_seeds=1"])) == [0]
    for bad in (0, 21):
        with pytest.raises(ConfigError, match=r"trainer.baseline_seeds must be in \[1, 20\]"):
            validate(compose([f"trainer.baseline_seeds={bad}"]))
