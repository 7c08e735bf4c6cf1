"""Promote and evaluate on a real tiny study: Optuna SQLite storage, MLflow SQLite store and
registry, real MindSpore training. The session's world (tests/world.py: a 3-trial sweep,
promoted) is read by the tests here; those that promote, evaluate or add studies take a copy."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli, tiny_overrides
from ids.config import ConfigError, compose
from ids.data import synthetic
from ids.data.flows import DataError, load_frame
from ids.data.prepare import prepare
from ids.data.splits import split_indices
from ids.experiment.evaluate import evaluate
from ids.serving.files import predict_file
from ids.tracking.registry import ModelNotFound, RegistryError
from ids.tuning.promote import PromoteError, promote
from ids.tuning.space import apply
from ids.tuning.sweep import sweep
from world import world_cfg

NAME = "ids-cnn-bilstm"


@pytest.fixture
def study(world_copy):
    """(folder, config) of a copy of the session's study, promoted once: tests here change it."""
    return world_copy.tmp, world_copy.cfg


@pytest.fixture
def promoted(world):
    """(folder, config, promote result) of the session's world: read only."""
    return world.tmp, world.cfg, world.promoted


@pytest.fixture
def promoted_copy(world_copy):
    """The same for a copy, for tests that log evaluation runs."""
    return world_copy.tmp, world_copy.cfg, world_copy.promoted


def client_of(cfg) -> MlflowClient:
    return MlflowClient(tracking_uri=str(cfg.tracking.uri))


def optuna_study(cfg) -> optuna.Study:
    return optuna.load_study(study_name=str(cfg.sweep.study), storage=str(cfg.sweep.storage))


def logged(client: MlflowClient, run_id: str, prefix: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def test_promote_registers_best_trial_as_champion(promoted):
    _, cfg, result = promoted
    best = optuna_study(cfg).best_trial
    client = client_of(cfg)
    assert (result["trial"], result["version"], result["created"]) == (best.number, "1", True)
    mv = client.get_model_version_by_alias(NAME, "champion")
    assert str(mv.version) == "1"
    assert mv.source == best.user_attrs["model_uri"]
    assert mv.run_id == best.user_attrs["run_id"]
    tags = mv.tags
    assert tags["ids.study"] == "cnn_bilstm"
    assert tags["trial.number"] == str(best.number)
    assert float(tags["trial.value"]) == best.value
    assert tags["ids.run_id"] == best.user_attrs["run_id"]
    assert tags["objective"] == f"val/{cfg.trainer.selection_metric}"
    for key, value in best.params.items():
        assert tags[f"param.{key}"] == str(value)


def test_promote_evaluates_on_the_trials_test_split_and_logs_what_it_returns(promoted):
    _, cfg, result = promoted
    ev = result["evaluation"]
    client = client_of(cfg)
    run = client.get_run(ev["run_id"])
    tags = run.data.tags
    assert tags["ids.role"] == "evaluation"
    assert tags["registered_model.name"] == NAME and tags["registered_model.version"] == "1"
    assert tags["model_uri"] == f"models:/{NAME}/1"
    assert tags["trial.number"] == str(result["trial"])
    assert tags["data.same_as_training"] == "true"
    # The test split of the trial's own data settings, every flow scored once.
    best = optuna_study(cfg).best_trial
    prepared = prepare(apply(cfg, best.params).data)
    assert ev["metrics"]["n"] == len(prepared.test.y)
    assert ev["window"] == best.params["data.window"]
    assert ev["threshold"] == pytest.approx(best.user_attrs["threshold"])
    # Logged == returned, exactly; report.txt == the printed report.
    assert logged(client, ev["run_id"], "test/") == ev["metrics"]
    assert set(ev["baselines"]) == {"all_attack", "extra_trees"}
    for name, metrics in ev["baselines"].items():
        assert logged(client, ev["run_id"], f"baseline/test/{name}/") == metrics
    assert client.download_artifacts(ev["run_id"], "report.txt") and \
        open(client.download_artifacts(ev["run_id"], "report.txt")).read() == ev["report"]
    arts = {a.path for a in client.list_artifacts(ev["run_id"], "plots")}
    assert "plots/test_confusion.png" in arts
    # The error table of the evaluation, against the median of three forests: the flows each
    # gets wrong add up to its confusion matrix.
    table = pd.read_csv(client.download_artifacts(ev["run_id"], "errors.csv"))
    et = ev["baselines"]["extra_trees"]
    assert (table.model_only + table.both_wrong).sum() == ev["metrics"]["fp"] + ev["metrics"]["fn"]
    assert (table.extra_trees_only + table.both_wrong).sum() == et["fp"] + et["fn"]
    assert ev["card"]["spread"]["seeds"] == [int(cfg.seed) + i for i in range(3)]
    assert "model wrong, extra-trees right:" in ev["report"]
    assert "detection_rate/Benign" in ev["report"]
    # The version carries its test figures and the evaluation run.
    mv = client.get_model_version(NAME, "1")
    assert mv.tags["evaluation.run_id"] == ev["run_id"]
    assert float(mv.tags["test.mcc"]) == ev["metrics"]["mcc"]


def test_evaluate_main_prints_the_logged_report(promoted_copy, monkeypatch, capsys):
    """`python -m ids.evaluate` (champion by default): printed report == logged report, and the
    metrics equal the promote-time evaluation of the same model on the same split."""
    tmp, cfg, result = promoted_copy
    best = optuna_study(cfg).best_trial
    run_cli(monkeypatch, "ids.evaluate", *tiny_overrides(tmp),
            *(f"{k}={v}" for k, v in best.params.items()), f"hydra.run.dir={tmp}/hydra")
    out = capsys.readouterr().out
    run_id = out.split("MLflow evaluation run ")[1].split()[0]
    client = client_of(cfg)
    report = open(client.download_artifacts(run_id, "report.txt")).read()
    assert out.startswith(report + "\n")
    assert logged(client, run_id, "test/") == result["evaluation"]["metrics"]
    assert client.get_run(run_id).data.tags["registered_model.version"] == "1"


def test_evaluate_on_another_file(promoted_copy, tmp_path):
    tmp, cfg, _ = promoted_copy
    flows = synthetic.generate(1500, 11, dict(cfg.data.class_mix))
    path = tmp_path / "other.csv"
    flows.to_csv(path, index=False)
    ev = evaluate(compose(tiny_overrides(tmp) + [f"input={path}"]))
    assert ev["metrics"]["n"] == 1500
    # ids.predict with the champion on the same file flags exactly what evaluate counted.
    alerts = tmp_path / "alerts.csv"
    assert predict_file(f"models:/{NAME}@champion", path, alerts, chunk_size=400) == 1500
    out = pd.read_csv(alerts)
    m = ev["metrics"]
    assert ((out.label == 1) & (out.Label == 1)).sum() == m["tp"]
    assert ((out.label == 1) & (out.Label == 0)).sum() == m["fp"]
    assert (out.label == 0).sum() == m["tn"] + m["fn"]
    assert ev["model"].version == "1"
    assert ev["baselines"]["all_attack"]["n"] == 1500
    assert "baselines: trained on the train split" in ev["report"]
    client = client_of(cfg)
    assert logged(client, ev["run_id"], "test/") == ev["metrics"]
    assert str(path) in client.get_run(ev["run_id"]).data.tags["eval.data"]

    flows.drop(columns=["IN_BYTES"]).to_csv(path, index=False)
    with pytest.raises(DataError, match="IN_BYTES"):
        evaluate(compose(tiny_overrides(tmp) + [f"input={path}"]))
    flows.drop(columns=["Label"]).to_csv(path, index=False)
    with pytest.raises(DataError, match="Label"):
        evaluate(compose(tiny_overrides(tmp) + [f"input={path}"]))


def test_promote_twice_reuses_the_version_then_moves_champion(study):
    tmp, _ = study
    cfg = world_cfg(tmp, "promote.model_name=twice", "promote.evaluate=false")
    client = client_of(cfg)
    trials = optuna_study(cfg)
    other = next(t.number for t in trials.trials if t.number != trials.best_trial.number)

    first = promote(cfg)
    again = promote(cfg)
    assert (first["version"], first["created"]) == ("1", True)
    assert (again["version"], again["created"], again["alias_moved"]) == ("1", False, False)
    assert len(client.search_model_versions("name = 'twice'")) == 1

    forced = promote(cfg, trial=other)
    assert (forced["version"], forced["created"], forced["previous_version"]) == ("2", True, "1")
    assert str(client.get_model_version_by_alias("twice", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("twice", "previous").version) == "1"

    back = promote(cfg)  # the best trial again: its version is reused, the aliases swap
    assert (back["version"], back["created"]) == ("1", False)
    assert str(client.get_model_version_by_alias("twice", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("twice", "previous").version) == "2"
    assert len(client.search_model_versions("name = 'twice'")) == 2
    assert "evaluation" not in back


def test_promote_bad_study_storage_and_settings(study, tmp_path):
    tmp, cfg = study
    with pytest.raises(PromoteError, match=r"no study 'nope'.*\['cnn_bilstm'\]"):
        promote(world_cfg(tmp, "sweep.study=nope"))
    with pytest.raises(PromoteError, match="no Optuna storage"):
        promote(world_cfg(tmp, f"sweep.storage=sqlite:///{tmp_path}/none.db"))
    empty = optuna.create_study(study_name="empty", storage=str(cfg.sweep.storage),
                                direction="maximize")
    empty.tell(empty.ask(), state=optuna.trial.TrialState.FAIL)
    with pytest.raises(PromoteError, match="no COMPLETE trial.*FAIL"):
        promote(world_cfg(tmp, "sweep.study=empty"))
    with pytest.raises(PromoteError, match="trial 99 .* COMPLETE trials: \\[0, 1, 2\\]"):
        promote(cfg, trial=99)
    with pytest.raises(ConfigError, match="previous_alias"):
        promote(world_cfg(tmp, "promote.previous_alias=champion"))
    with pytest.raises(RegistryError, match="no MLflow store"):
        promote(world_cfg(tmp, f"tracking.uri=sqlite:///{tmp_path}/none.db"))


@pytest.mark.parametrize("uri, message", [
    ("models:/ids-cnn-bilstm@nope", r"no alias 'nope'.*champion -> v1"),
    ("models:/nope@champion", r"no registered model 'nope'.*ids-cnn-bilstm"),
    ("models:/ids-cnn-bilstm/9", "has no version 9"),
    ("models:/m-0123", "no logged model 'm-0123'"),
    ("runs:/0123/model", "no run '0123'"),
    ("models:/ids-cnn-bilstm", "malformed"),
])
def test_unknown_model_uri(promoted, uri, message):
    tmp, _, _ = promoted
    with pytest.raises(ModelNotFound, match=message):
        evaluate(compose(tiny_overrides(tmp)), uri)


def test_promote_main_exits_2_with_the_error(study, monkeypatch, capsys):
    tmp, _ = study
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, "ids.promote", *tiny_overrides(tmp), "sweep.study=nope",
                f"hydra.run.dir={tmp}/hydra")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no study 'nope'") and "Traceback" not in err


def test_test_split_scores_match_the_training_windows(promoted):
    """The model's own preprocessor on the raw test rows gives the training-time features."""
    import mlflow

    from ids.model.runtime import predict_proba
    from ids.tracking.registry import load_scorer

    _, cfg, result = promoted
    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    best = optuna_study(cfg).best_trial
    dcfg = apply(cfg, best.params).data
    prepared = prepare(dcfg)
    scorer = load_scorer(result["version_uri"])
    raw = load_frame(dcfg).iloc[prepared.test.rows]
    X = scorer.transform(raw)
    np.testing.assert_array_equal(X, prepared.test.X)
    windows = prepared.test.windows(scorer.window)
    np.testing.assert_allclose(scorer.score_matrix(X),
                               predict_proba(scorer.model, windows, scorer.eval_batch_size),
                               atol=1e-6)


def test_promote_scores_the_trials_chunked_test_split_not_todays_command_line(
        tmp_path, monkeypatch, capsys):
    """Sweep with data.split=chunks, then a plain promote (today's config: contiguous): the
    champion is scored on the chunked test split it never saw, taken from the trial's run; an
    evaluate that asks for data.split=contiguous on that model fails naming data.split."""
    sweep(world_cfg(tmp_path, "data.split=chunks", "data.chunk_size=400", "sweep.n_trials=1",
                    "trainer.epochs=1", "trainer.baselines=false", "tracking.log_plots=false"))
    plain = world_cfg(tmp_path)
    assert plain.data.split == "contiguous"
    result = promote(plain)
    ev = result["evaluation"]
    chunked = apply(plain, {"data.split": "chunks", "data.chunk_size": 400}).data
    want = split_indices(4000, chunked)["test"]
    contiguous = split_indices(4000, plain.data)["test"]
    assert not np.array_equal(want, contiguous)
    np.testing.assert_array_equal(ev["rows"], want)
    assert ev["config"].data.split == "chunks" and ev["metrics"]["n"] == len(want)
    assert "unseen" in ev["report"] and "copies of a training flow" in ev["report"]
    assert client_of(plain).get_model_version(NAME, result["version"]).tags[
        "config.source"] == "run"
    # The trial's own run: copy shares and the model on the unseen validation flows.
    trial_run = client_of(plain).get_run(optuna_study(plain).best_trial.user_attrs["run_id"])
    m = trial_run.data.metrics
    assert m["val_copies/n"] == m["val_unseen/n"] + m["val_copies/copies"]
    assert "val_unseen/mcc" in m and not any(k.startswith("test") for k in m)

    window = optuna_study(plain).best_trial.params["data.window"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, "ids.evaluate", *tiny_overrides(tmp_path), f"data.window={window}",
                "data.split=contiguous", f"hydra.run.dir={tmp_path}/hydra")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data.split='contiguous' (the model's: 'chunks')" in err and "Traceback" not in err
    assert "data.window" not in err  # the same as the model's: no complaint
