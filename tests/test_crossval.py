"""Cross-validated runs (trainer.cv_folds, ids.model.crossval): out-of-fold scores are each fold
model's scores on its held-out block; the threshold comes from all of them; the bag scores the
mean probability of its members and loads wherever a model loads (Scorer folder, pyfunc,
ids.predict, ids.evaluate); a bag file whose member count does not fit its weights is refused.
Also the encodings and the schedule the real-data preset searches (data.numeric_top_k,
trainer.lr_schedule=cosine)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mindspore as ms
import numpy as np
import pandas as pd
import pytest

from ids.artifact import modelfile
from ids.config import ConfigError, compose, validate
from ids.data.encoding import Preprocessor
from ids.data.encoding_state import from_state, state
from ids.data.folds import make_folds
from ids.data.prepare import clear_cache, prepare
from ids.evaluation.metrics import best_threshold
from ids.model.feed import score
from ids.model.fit import learning_rate
from ids.model.runtime import predict_proba, setup_runtime, sigmoid
from world import mlflow_store, tiny_overrides


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    """One 3-fold run of 1 epoch each on 3,000 synthetic flows, its bag saved as a model."""
    from ids.artifact.scorer import Scorer
    from ids.model.crossval import cross_fit
    from ids.tracking.models import save_scorer_model
    from ids.tracking.store import model_config

    tmp = tmp_path_factory.mktemp("cv")
    clear_cache()
    cfg = compose(tiny_overrides(tmp) + ["data.n_flows=3000", "trainer.epochs=1",
                                          "trainer.cv_folds=3", "trainer.baselines=false"])
    prepared = prepare(cfg.data)
    setup_runtime(cfg.trainer)
    result = cross_fit(cfg, prepared, checkpoint_dir=tmp / "ckpt")
    scorer = Scorer(prepared.preprocessor, {**dict(cfg.model), "members": 3},
                    int(cfg.data.window), float(result.threshold), result.checkpoint,
                    int(cfg.trainer.eval_batch_size), model_config(cfg))
    folder = save_scorer_model(scorer, tmp / "model")
    return {"cfg": cfg, "prepared": prepared, "result": result, "scorer": scorer,
            "folder": folder}


def test_out_of_fold_scores_are_each_fold_models_scores_on_its_block(cv):
    cfg, prepared, result = cv["cfg"], cv["prepared"], cv["result"]
    folds = make_folds(prepared, 3)
    assert len(result.folds) == 3 and not np.isnan(result.val_scores).any()
    for fold, fitted in zip(folds, result.folds, strict=True):
        mine = score(fitted.model, fold.data.val, int(cfg.data.window),
                     int(cfg.trainer.eval_batch_size), str(cfg.trainer.distinct))
        np.testing.assert_array_equal(result.val_scores[fold.held], mine)
    # the threshold and value are those of all out-of-fold scores at once
    y = np.concatenate([prepared.train.y, prepared.val.y])
    np.testing.assert_array_equal(result.val_y, y)
    assert (result.threshold, result.best_value) == best_threshold(y, result.val_scores, "mcc")


def test_the_bag_scores_the_mean_probability_of_its_members(cv):
    cfg, prepared, result = cv["cfg"], cv["prepared"], cv["result"]
    x = prepared.test.windows(int(cfg.data.window))[:300]
    members = [sigmoid(m.model(ms.Tensor(np.ascontiguousarray(x))).asnumpy())
               for m in result.folds]
    bag = predict_proba(result.model, x, 1024)
    np.testing.assert_allclose(bag, np.mean(members, axis=0), atol=2e-6)
    assert np.ptp(members, axis=0).max() > 1e-3  # the members differ: a mean, not a copy


def test_a_saved_bag_loads_and_scores_like_the_bag_everywhere(cv, tmp_path, monkeypatch, capsys):
    import mlflow.pyfunc

    from conftest import run_cli_status
    from ids.data.flows import load_rows

    cfg, prepared, result = cv["cfg"], cv["prepared"], cv["result"]
    meta = json.loads(next(Path(cv["folder"]).rglob("scorer.json")).read_text())
    flows = load_rows(cfg.data, prepared.test.rows)
    want = score(result.model, prepared.test, int(cfg.data.window),
                 int(cfg.trainer.eval_batch_size), str(cfg.trainer.distinct))
    got = mlflow.pyfunc.load_model(str(cv["folder"])).predict(flows)
    np.testing.assert_allclose(got["score"].to_numpy(), want, atol=2e-6)
    assert meta["model"]["members"] == 3
    # ids.predict: the file's flows scored in one window sequence, as the test split is
    src, out = tmp_path / "flows.csv", tmp_path / "alerts.csv"
    flows.to_csv(src, index=False)
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.predict",
                                  f"model_uri={cv['folder']}", f"input={src}",
                                  f"output={out}", f"hydra.run.dir={tmp_path}/h")
    assert code == 0, err
    np.testing.assert_allclose(pd.read_csv(out)["score"].to_numpy(), want, atol=2e-6)


def test_a_bag_file_whose_member_count_does_not_fit_is_refused(cv, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(Path(cv["folder"]), folder)
    path = next(folder.rglob("scorer.json"))
    meta = json.loads(path.read_text())
    for members, what in ((0, "'members' must be an int in [1, 20]"),
                          (21, "'members' must be an int in [1, 20]"),
                          ("3", "'members' must be an int in")):
        bad = {**meta, "model": {**meta["model"], "members": members}}
        with pytest.raises(modelfile.ModelFormatError, match=re.escape(what)):
            modelfile.check_meta(bad)
    from ids.artifact.scorer import Scorer

    path.write_text(json.dumps({**meta, "model": {**meta["model"], "members": 2}}))
    with pytest.raises(modelfile.ModelFormatError):
        Scorer.load(path.parent)


def test_one_fold_is_refused_in_one_line(tmp_path):
    cfg = compose(tiny_overrides(tmp_path) + ["trainer.cv_folds=1"])
    with pytest.raises(ConfigError, match="trainer.cv_folds must be 0 .none. or 2 and more"):
        validate(cfg)
    with pytest.raises(ConfigError, match="trainer.cv_folds"):
        validate(compose(tiny_overrides(tmp_path) + ["trainer.cv_folds=21"]))


def test_numeric_top_k_indicates_each_columns_most_frequent_train_values():
    from ids.config import SYNTHETIC_MIX
    from ids.data.synthetic import generate

    df = generate(2000, 0, SYNTHETIC_MIX)
    pre = Preprocessor(numeric_top_k=3).fit(df)
    names = pre.feature_names_
    col = pre.log_columns_[0]
    mine = [n for n in names if n.startswith(f"{col}==")]
    assert 1 <= len(mine) <= 3
    counts = df[col].clip(lower=0).value_counts()
    top = sorted(counts.index[: len(mine)]) if counts.iloc[:len(mine)].min() > \
        (counts.iloc[len(mine)] if len(counts) > len(mine) else -1) else None
    X = pre.transform(df)
    for name in mine:
        value = float(name.split("==")[1])
        j = names.index(name)
        np.testing.assert_array_equal(X[:, j], np.isclose(df[col].clip(lower=0), value,
                                                          rtol=1e-5).astype(np.float32))
    if top is not None:
        assert sorted(float(n.split("==")[1]) for n in mine) == pytest.approx(top, rel=1e-5)
    # a column with fewer distinct values than K gets fewer indicators, never a constant one
    assert X[:, [names.index(n) for n in names if "==" in n]].max(axis=0).min() == 1
    back = from_state(*state(pre))
    np.testing.assert_array_equal(back.transform(df), X)


def test_cosine_schedule_runs_from_lr_to_a_hundredth_at_the_last_step(tiny_cfg):
    cfg = tiny_cfg("trainer.lr=0.01", "trainer.epochs=3", "trainer.lr_schedule=cosine")
    rates = learning_rate(cfg.trainer, steps=5).asnumpy()
    assert rates.shape == (15,)
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(1e-4)
    assert np.all(np.diff(rates) <= 0)
    assert learning_rate(tiny_cfg("trainer.lr=0.01").trainer, steps=5) == 0.01


def test_the_selection_check_filters_trials_by_their_params():
    from ids.tools.selection import matches

    params = {"data.window": 10, "data.window_by": "host"}
    assert matches(params, "data.window_by=host,data.window!=1")
    assert not matches(params, "data.window=1")
    assert matches({"data.window": 1}, "data.window=1") and matches(params, "")
    with pytest.raises(SystemExit, match="not key=value"):
        matches(params, "data.window")


@pytest.mark.slow
def test_a_cross_validated_sweep_promotes_its_bag_and_the_selection_check_reads_it(tmp_path):
    """A 2-trial study of 2-fold trials: each trial's value is its out-of-fold MCC, ids.promote
    re-evaluates the bag on test against forests fitted on train+val, and ids.tools.selection
    scores the trials' models on test after the study."""
    from ids.tools import selection
    from ids.tuning.promote import promote
    from ids.tuning.sweep import sweep

    clear_cache()
    overrides = tiny_overrides(tmp_path) + [
        "data.n_flows=3000", "sweep.n_trials=2", "trainer.epochs=1", "trainer.cv_folds=2",
        "sweep.log_artifacts=all", "sweep.pruner=none", "trainer.baseline_seeds=1"]
    mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    cfg = compose(overrides)
    summary = sweep(cfg)
    assert summary["n_complete"] == 2
    out = promote(compose(overrides))
    card = out["evaluation"]["card"]
    assert card["counts"]["all"]["n"] == len(prepare(cfg.data).test.y)
    assert "out-of-fold scores of train+val, a bag of 2 fold models" in out["evaluation"]["report"]
    m = selection.measure(compose(overrides), top=2, seeds=1, budgets=[60],
                          against=("", "trainer.epochs!=7"))
    assert [r["trial"] for r in m["top"]] and -1 <= m["spearman"] <= 1
    assert m["budgets"][0]["trial"] == m["top"][0]["trial"]
    # Both filters match every trial: the champion against itself, on the same test flows.
    v, m_best = m["versus"], m["top"][0]
    best = m_best["trial"]
    assert v["a"]["trial"] == v["b"]["trial"] == best and v["champion"] == "a"
    assert v["paired"]["diff"] == 0 and v["paired"]["verdict"] == "no evidence either way"
    assert v["a"]["test_mcc"] == pytest.approx(m_best["test_mcc"])
