"""Issue 38: why the model loses to Extra-Trees. The error table (the flows one gets wrong and
the other right, per category and copies / unseen) adds up to both models' confusion
matrices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ids.evaluation import errors
from ids.evaluation.metrics import confusion

CATEGORIES = ("Benign", "DoS", "DDoS", "Reconnaissance", "Theft")


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
