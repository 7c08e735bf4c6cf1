"""Numbers you can trust: copies of training flows on a hand-built file, exact dedup, the
bootstrap intervals' coverage on simulated predictions, the paired verdict and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ids.config import compose
from ids.data.copies import MIN_CLASS_FLOWS
from ids.data.flows import ID_COLUMNS
from ids.data.prepare import clear_cache, prepare
from ids.evaluation import scorecard
from ids.evaluation.intervals import confusion_ci, paired_difference
from ids.evaluation.metrics import metrics_from_confusion


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def flow(i: int, label: int, ip: str = "10.0.0.1", port: int = 1000, attack=None) -> dict:
    """A v1 flow whose features are determined by i (equal i -> equal features)."""
    return {"IPV4_SRC_ADDR": ip, "L4_SRC_PORT": port, "IPV4_DST_ADDR": "10.0.0.9",
            "L4_DST_PORT": 80, "PROTOCOL": 6, "L7_PROTO": 7.0, "IN_BYTES": 100 + i,
            "OUT_BYTES": 50 + i, "IN_PKTS": 2, "OUT_PKTS": 1, "TCP_FLAGS": 18,
            "FLOW_DURATION_MILLISECONDS": i, "Label": label,
            "Attack": attack or ("Benign" if label == 0 else "DoS")}


def prepared(tmp_path, rows: list[dict], *overrides: str):
    path = tmp_path / "flows.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    cfg = compose(["data=nf_bot_iot", f"data.path={path}", "data.window=1", *overrides])
    return prepare(cfg.data)


def hand_built() -> list[dict]:
    """40 flows, contiguous 70/15/15: train 0-27, val 28-33, test 34-39. Train holds features
    0..27 (benign where i % 4 == 0). Test: 34 copies train flow 4 (benign, same label), 35
    copies train flow 5 (attack) but from another host (identifiers differ), 36 copies train
    flow 8 with the OTHER label (attack), 37-39 are new (37 benign)."""
    rows = [flow(i, int(i % 4 != 0)) for i in range(28)]
    rows += [flow(100 + i, int(i != 0)) for i in range(6)]  # val: new features
    rows += [flow(4, 0), flow(5, 1, ip="10.0.0.77", port=4444), flow(8, 1),
             flow(200, 0), flow(201, 1), flow(202, 1)]
    return rows


def test_copy_shares_on_a_hand_built_file(tmp_path):
    p = prepared(tmp_path, hand_built())
    assert list(p.test.rows) == list(range(34, 40))
    s = p.info["overlap"]["test"]
    assert (s["n"], s["copies"], s["conflicting"]) == (6, 3, 1)
    assert (s["benign"], s["benign_copies"], s["attack"], s["attack_copies"]) == (2, 1, 4, 2)
    assert s["copy_share"] == pytest.approx(0.5)
    assert s["copy_share_benign"] == pytest.approx(0.5)
    assert (s["unseen"], s["unseen_benign"], s["unseen_attack"]) == (3, 1, 2)
    assert p.info["overlap"]["val"]["copies"] == 0
    from ids.data.copies import unseen_mask
    assert unseen_mask(p.train, p.test).tolist() == [False, False, False, True, True, True]


def test_identifiers_count_only_when_the_model_sees_them(tmp_path):
    with pytest.warns(UserWarning, match="leak"):
        p = prepared(tmp_path, hand_built(), "data.keep_identifiers=true")
    s = p.info["overlap"]["test"]
    assert (s["copies"], s["attack_copies"]) == (2, 1)  # flow 35 (other host) is new now


def test_dedup_exact_removes_exactly_the_duplicates(tmp_path):
    rows = hand_built()
    # Exact copies of earlier flows (features, Label, Attack): 3 of them; near copies are kept.
    rows += [flow(1, 1), flow(2, 1), flow(1, 1)]                # 40, 41 and 42: duplicates
    rows += [flow(3, 0)]                                        # 43: flow 3 with other label
    rows += [flow(6, 1, attack="DDoS")]                         # 44: flow 6, other category
    rows += [flow(7, 1, ip="10.0.0.5")]                         # 45: flow 7 from another host
    rows += [flow(300 + i, int(i % 3 != 0)) for i in range(20)]  # new flows: enough for splits
    none = prepared(tmp_path, rows)
    assert none.info["dedup"] == {"mode": "none", "dropped": 0, "kept": len(rows)}
    clear_cache()
    p = prepared(tmp_path, rows, "data.dedup=exact")
    # hand_built's test copies 34 (= flow 4) and 36 (= flow 8, other label) and 35 (= flow 5,
    # other host: identifiers are not features) are duplicates too: 34 and 35 go, 36 stays.
    dropped = {34, 35, 40, 41, 42, 45}
    assert p.info["dedup"] == {"mode": "exact", "dropped": len(dropped),
                               "kept": len(rows) - len(dropped)}
    used = np.concatenate([p.train.rows, p.val.rows, p.test.rows])
    assert sorted(used) == sorted(set(range(len(rows))) - dropped)  # rows index the file
    df = pd.DataFrame(rows).drop(columns=ID_COLUMNS)
    assert not df.iloc[np.sort(used)].duplicated().any()
    assert df.iloc[sorted(dropped)].apply(tuple, axis=1).isin(
        df.iloc[np.sort(used)].apply(tuple, axis=1)).all()
    # Windows run over the remaining flows: the split is 70/15/15 of the kept flows.
    assert len(p.train.y) + len(p.val.y) + len(p.test.y) == len(rows) - len(dropped)


def _population_mcc(p: np.ndarray) -> float:
    return metrics_from_confusion(*p)["mcc"]


def test_intervals_cover_the_true_value_about_95_percent():
    """Flows drawn from a known population (5 % benign, benign recall 0.8, attack recall 0.97):
    the 95 % interval of each metric holds the population value in about 95 % of samples."""
    rng = np.random.default_rng(1)
    benign, rec_b, rec_a = 0.05, 0.8, 0.97
    cells = np.array([benign * rec_b, benign * (1 - rec_b), (1 - benign) * (1 - rec_a),
                      (1 - benign) * rec_a])  # tn, fp, fn, tp shares
    truth = metrics_from_confusion(*cells)
    hits = {m: 0 for m in ("mcc", "benign_recall", "f1", "balanced_accuracy")}
    reps = 400
    for r in range(reps):
        y = rng.random(3000) >= benign
        pred = np.where(y, rng.random(len(y)) < rec_a, rng.random(len(y)) >= rec_b)
        tn, fp = int((~y & ~pred).sum()), int((~y & pred).sum())
        fn, tp = int((y & ~pred).sum()), int((y & pred).sum())
        ci = confusion_ci(tn, fp, fn, tp, n_boot=1000, seed=r)
        for m, (lo, hi) in ci.items():
            hits[m] += lo <= truth[m] <= hi
    for m, h in hits.items():
        assert 0.91 <= h / reps <= 0.985, (m, h / reps)


def test_paired_verdict():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) > 0.1).astype(int)
    good = np.where(rng.random(len(y)) < 0.95, y, 1 - y)
    bad = np.where(rng.random(len(y)) < 0.80, y, 1 - y)
    better = paired_difference(y, good, bad)
    assert better["verdict"] == "better" and better["low"] > 0
    assert paired_difference(y, bad, good)["verdict"] == "worse"
    same = paired_difference(y, good, good)
    assert same["verdict"] == "no evidence either way" and same["diff"] == 0.0
    tiny = paired_difference(y[:40], good[:40], np.where(np.arange(40) == 3, 1 - good[:40],
                                                         good[:40]))
    assert tiny["verdict"] == "no evidence either way"


def test_report_shows_all_and_unseen_with_intervals_and_says_when_too_few():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) > 0.05).astype(int)
    attack = np.where(y == 1, "DoS", "Benign")
    unseen = np.zeros(len(y), bool)
    unseen[: 400] = True  # about 20 benign: fewer than MIN_CLASS_FLOWS
    model = np.where(rng.random(len(y)) < 0.9, y, 1 - y).astype(float)
    preds = {scorecard.MODEL: (model, 0.5), "all_attack": (np.ones(len(y)), 0.5),
             "extra_trees": (y.astype(float), 0.5)}
    card = scorecard.build(y, attack, unseen, preds, seed=0)
    n_benign = card["counts"]["unseen"]["benign"]
    assert 0 < n_benign < MIN_CLASS_FLOWS
    text = scorecard.text(card, "this run (test)", paper={"f1": 0.99})
    m = card["all"][scorecard.MODEL]
    assert f"{m['mcc']:.3f} [{m['mcc_ci_low']:.3f}, {m['mcc_ci_high']:.3f}]" in text
    assert m["mcc_ci_low"] <= m["mcc"] <= m["mcc_ci_high"]
    assert f"n/a ({n_benign} benign)" in text
    assert "MCC difference on all test flows (paired bootstrap)" in text and ": worse" in text
    assert "flows close in time are not independent" in text
    flat = scorecard.mlflow_metrics(card)
    assert flat["test/mcc"] == m["mcc"]
    assert flat["test_unseen/n"] == 400
    assert flat["baseline/test_unseen/extra_trees/mcc"] == pytest.approx(1.0)
    assert flat["paired/test/mcc_minus_extra_trees_ci_high"] < 0
    assert scorecard.verdict_tags(card)["verdict.test.vs_extra_trees"] == "worse"


def test_command_line_data_settings_that_differ_from_the_models_are_named(tmp_path):
    from ids.config import typed
    from ids.experiment import lineage

    assert lineage.explicit_data_keys(["data.split=chunks", "trainer.lr=0.1", "seed=3"]) == {
        "split", "seed"}
    assert lineage.explicit_data_keys(["data=nf_bot_iot", "data.path=x"]) == {"source", "path"}
    assert lineage.explicit_data_keys(["+experiment=paper"]) == {"source"}
    # Selecting the data group names the kind of data, not its defaults: a trial that swept
    # data.window is promoted with the documented `data=nf_bot_iot data.path=...`.
    swept = typed(compose(["data.window=1"]))
    assert lineage.conflicts(compose(["data=synthetic"]), swept, ["data=synthetic"]) == []
    assert lineage.conflicts(compose(["data.window=10"]), swept, ["data.window=10"]) != []
    model = typed(compose(["data.split=chunks", "data.window=5"]))
    today = compose(["data.window=5"])
    assert lineage.conflicts(today, model, None) == []  # nothing given explicitly
    assert lineage.conflicts(today, model, ["data.window=5"]) == []  # given, but the same
    assert lineage.conflicts(today, model, ["data.split=contiguous"]) == [
        "data.split='contiguous' (the model's: 'chunks')"]
    with pytest.raises(Exception, match=r"data\.seed=7 \(the model's: 0\).*seed=7"):
        lineage.check(compose(["seed=7"]), model, ["seed=7"], "model m")
    adopted = lineage.adopt(today, model)
    assert adopted.data.split == "chunks" and today.data.split == "contiguous"
    # The same file under two spellings is the same path.
    f = tmp_path / "flows.csv"
    f.write_text("x")
    a = typed(compose(["data=nf_bot_iot", f"data.path={f}"]))
    b = compose(["data=nf_bot_iot", f"data.path={tmp_path}/../{tmp_path.name}/flows.csv"])
    assert lineage.conflicts(b, a, ["data.path=..."]) == []
    # The model's file is gone from where its run saw it: an existing file given explicitly is
    # taken (ids.evaluate then checks its content hash against the training run's).
    gone = typed(compose(["data=nf_bot_iot", f"data.path={tmp_path}/moved.csv"]))
    assert lineage.conflicts(b, gone, ["data.path=..."]) == []
    assert lineage.adopt(b, gone, overrides=["data.path=..."]).data.path == b.data.path
    assert lineage.adopt(b, gone).data.path == f"{tmp_path}/moved.csv"
