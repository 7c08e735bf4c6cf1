"""Secrets never reach a run: a real tiny run given URIs with a password, its params, tags,
config.yaml, data.json, model files and captured output searched for the password."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli, tiny_overrides
from ids.tracking import store
from ids.tracking.redact import redact
from world import mlflow_store

SECRET = "S3cr3t-pw"


@pytest.mark.parametrize("uri, expected", [
    (f"postgresql+psycopg2://ids:{SECRET}@db:5432/optuna", "postgresql+psycopg2://ids:***@db:5432/optuna"),
    (f"http://admin:{SECRET}@mlflow.example:5000", "http://admin:***@mlflow.example:5000"),
    (f"postgresql://ids@db/optuna?sslmode=require&password={SECRET}",
     "postgresql://ids@db/optuna?sslmode=require&password=***"),
    (f"mysql://u:p@{SECRET}@h/d", "mysql://u:***@h/d"),  # '@' inside the password
    (f"postgresql://u:p/{SECRET}@h/d", "postgresql://u:***@h/d"),  # '/' (escaped the regex)
    (f"http://u:{SECRET}#?a=b:c@h:5000/#/x", "http://u:***@h:5000/#/x"),  # '#', '?', ':'
    (f"http://u:%2F{SECRET}%40@h", "http://u:***@h"),  # %-escapes
    (f"View run tiny at: http://u:a/b@{SECRET}@h/#/experiments/1/runs/9",
     "View run tiny at: http://u:***@h/#/experiments/1/runs/9"),  # MLflow's run link
    (f"error: sweep.storage='postgresql://a:{SECRET}@c/d' is unreachable",
     "error: sweep.storage='postgresql://a:***@c/d' is unreachable"),
    ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("models:/ids-cnn-bilstm@champion", "models:/ids-cnn-bilstm@champion"),
])
def test_redact(uri, expected):
    assert redact(uri) == expected


def _texts(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(errors="replace") for p in folder.rglob("*")
            if p.is_file() and p.suffix in (".yaml", ".json", ".txt", ".py", "") }


def test_a_run_given_uris_with_a_password_logs_and_prints_none(tmp_path, monkeypatch, capsys):
    storage = f"postgresql+psycopg2://ids:{SECRET}@db.example:5432/optuna?password={SECRET}"
    data_url = f"https://reader:{SECRET}@data.example/flows.csv"
    mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    run_cli(monkeypatch, "ids.run", *tiny_overrides(tmp_path), "trainer.epochs=1",
            "trainer.baselines=false", "tracking.log_plots=false", f"sweep.storage='{storage}'",
            f"data.path={data_url}", f"hydra.run.dir={tmp_path}/hydra")
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "MLflow run" in out
    # Hydra's own folder keeps no copy of the command line's overrides.
    assert not [p for p in (tmp_path / "hydra").rglob("*")
                if p.is_file() and SECRET in p.read_text(errors="replace")]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("ids").experiment_id])
    params, tags = run.data.params, run.data.tags
    assert params["sweep.storage"] == ("postgresql+psycopg2://ids:***@db.example:5432/optuna"
                                       "?password=***")
    assert params["data.path"] == "https://reader:***@data.example/flows.csv"
    assert not [k for k, v in {**params, **tags}.items() if SECRET in v]
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="",
                                                     tracking_uri=client.tracking_uri))
    texts = _texts(local)
    assert "config.yaml" in texts and "data.json" in texts
    assert "storage: postgresql+psycopg2://ids:***@db.example" in texts["config.yaml"]
    assert not [name for name, text in texts.items() if SECRET in text]
    # The model carries the run's config: redacted too.
    model = Path(mlflow.artifacts.download_artifacts(
        f"models:/{run.outputs.model_outputs[0].model_id}", tracking_uri=client.tracking_uri))
    scorer_json = (model / "artifacts" / "scorer" / "scorer.json").read_text()
    assert "https://reader:***@data.example" in scorer_json and SECRET not in scorer_json


def test_tags_and_errors_of_any_run_are_redacted(tmp_path):
    cfg_uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")

    class Cfg:
        uri, experiment = cfg_uri, "redaction"

    exp = store.configure(Cfg)
    with pytest.raises(RuntimeError), store.start_run(
            exp, tags={"ids.storage": f"postgresql://ids:{SECRET}@db/optuna"}):
        raise RuntimeError(f"could not reach postgresql://ids:{SECRET}@db/optuna")
    (run,) = MlflowClient(cfg_uri).search_runs([exp])
    assert run.data.tags["ids.storage"] == "postgresql://ids:***@db/optuna"
    assert run.data.tags["error"] == "RuntimeError: could not reach postgresql://ids:***@db/optuna"


def test_an_error_message_with_a_password_is_printed_redacted(tmp_path, monkeypatch, capsys):
    storage = f"postgresql+psycopg2://ids:{SECRET}@127.0.0.1:1/optuna"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, "ids.sweep", *tiny_overrides(tmp_path), f"sweep.storage={storage}",
                f"hydra.run.dir={tmp_path}/hydra")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "sweep.storage=" in err and "ids:***@127.0.0.1:1" in err and SECRET not in err
