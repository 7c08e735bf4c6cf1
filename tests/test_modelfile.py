"""Model files are data, not code: what a logged model holds, that it loads where this checkout
is not installed, and that ids refuses models whose loading would run someone else's code."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import patience, run_cli
from ids.artifact.modelfile import FORMAT, VERSION, ModelFormatError
from ids.artifact.scorer import Scorer
from ids.data import synthetic
from ids.tracking import registry
from ids.tracking.registry import load_scorer
from world import mlflow_store


class _Armed:
    """Unpickling this writes `marker`: what a hostile model file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


class _ArmedModel(mlflow.pyfunc.PythonModel):
    """A pyfunc whose cloudpickle (python_model.pkl, the pre-2 ids format) runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))

    def predict(self, context, model_input, params=None):
        return model_input


def test_the_logged_model_is_data_plus_this_package_code(tiny_model):
    folder, scorer, cfg = tiny_model
    folder = Path(folder)
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    pyfunc = spec["flavors"]["python_function"]
    assert pyfunc["model_code_path"].endswith("pyfunc_model.py") and "python_model" not in pyfunc
    assert pyfunc["code"] == "code" and (folder / "code" / "ids" / "artifact" / "scorer.py").is_file()
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("__pycache__"))
    files = {p.name for p in (folder / "artifacts" / "scorer").iterdir()}
    assert files == {"scorer.json", "preprocessor.npz", "weights.npz"}
    meta = json.loads((folder / "artifacts" / "scorer" / "scorer.json").read_text())
    assert (meta["format"], meta["version"]) == (FORMAT, VERSION)
    # Every runtime requirement of this package, pinned to the installed version.
    reqs = (folder / "requirements.txt").read_text().split()
    declared = [r for r in metadata.requires("ids") if "extra ==" not in r]
    names = {r.split("==")[0].split("[")[0].lower() for r in reqs}
    for r in declared:
        name = r.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()
        assert name.lower() in names, (name, reqs)
    assert f"mindspore=={metadata.version('mindspore')}" in reqs
    # The run's resolved config travels with the model.
    loaded = load_scorer(str(folder))
    assert loaded.config == scorer.config
    assert loaded.config["data"]["window"] == 4 and loaded.config["model"]["lstm_units"] == 8
    assert set(loaded.config) == {"data", "model", "trainer"}
    flows = synthetic.generate(300, 3, dict(cfg.data.class_mix))
    np.testing.assert_array_equal(loaded.predict(flows)["score"], scorer.predict(flows)["score"])


@pytest.mark.slow  # a fresh interpreter importing MindSpore and MLflow: ~10 s of CPU
def test_the_model_loads_where_this_checkout_is_not_installed(tiny_model, tmp_path):
    """A fresh interpreter that cannot import `ids` at all (editable install hidden, other
    folder) loads the model with MLflow alone: the package comes from the model's code/."""
    folder, scorer, cfg = tiny_model
    flows = synthetic.generate(200, 5, dict(cfg.data.class_mix))
    flows.to_csv(tmp_path / "flows.csv", index=False)
    script = f"""
import sys
sys.meta_path = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]
try:
    import ids
    sys.exit('ids importable before loading: ' + ids.__file__)
except ImportError:
    pass
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model({str(folder)!r})
out = model.predict(pd.read_csv('flows.csv'))
import ids
print(ids.__file__)
out.to_csv('scores.csv', index=False)
"""
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=patience(300))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith(str(Path(folder) / "code"))
    got = pd.read_csv(tmp_path / "scores.csv")
    np.testing.assert_allclose(got["score"], scorer.predict(flows)["score"], atol=1e-6)


def test_a_registered_pickle_model_is_refused_and_its_code_does_not_run(tiny_model, tmp_path,
                                                                          monkeypatch, capsys):
    marker = tmp_path / "pwned.txt"
    # The old format: a cloudpickled python_model.pkl and a scorer folder with preprocessor.pkl.
    old = tmp_path / "old-scorer"
    old.mkdir()
    (old / "preprocessor.pkl").write_bytes(pickle.dumps(_Armed(marker)))
    (old / "scorer.json").write_text(json.dumps({"window": 4, "threshold": 0.5}))
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("evil", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp):  # artifacts in tmp_path, not ./mlruns
        info = mlflow.pyfunc.log_model(name="model", python_model=_ArmedModel(marker),
                                       artifacts={"scorer": str(old)})
    client = MlflowClient(uri)
    version = mlflow.register_model(info.model_uri, "evil").version
    client.set_registered_model_alias("evil", "champion", version)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    armed = (local / "python_model.pkl").read_bytes()
    pickle.loads(armed)  # the artifact is armed: unpickling runs its code ...
    assert marker.read_text() == "code ran"
    marker.unlink()

    ref = registry.resolve_model("models:/evil@champion", registry.connect(uri))
    with pytest.raises(registry.ModelNotFound, match="older ids as a pickle"):
        registry.load_scorer(ref)
    assert not marker.exists()  # ... ids refused it before reading it
    # The folder format too, and the command line: one line, exit 2, nothing ran.
    with pytest.raises(ModelFormatError, match="older ids as a pickle"):
        Scorer.load(old)
    out = tmp_path / "alerts.csv"
    synthetic.generate(100, 1, dict(tiny_model[2].data.class_mix)).to_csv(tmp_path / "f.csv")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, "ids.predict", f"tracking.uri={uri}", f"hydra.run.dir={tmp_path}/h",
                "model_uri=models:/evil@champion", f"input={tmp_path}/f.csv", f"output={out}")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "models:/evil@champion" in err and "pickle" in err
    assert not marker.exists() and not out.exists()


def test_ids_never_runs_the_code_file_stored_with_a_model(tiny_model, tmp_path):
    """Someone swaps the model's pyfunc_model.py: ids reads the data and ignores the file."""
    import shutil

    folder, scorer, cfg = tiny_model
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    marker = tmp_path / "pwned.txt"
    (copy / "pyfunc_model.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    flows = synthetic.generate(100, 2, dict(cfg.data.class_mix))
    loaded = load_scorer(str(copy))
    np.testing.assert_array_equal(loaded.predict(flows)["score"], scorer.predict(flows)["score"])
    assert not marker.exists()


@pytest.mark.parametrize("damage, message", [
    (lambda d: _edit_json(d, version=1), "format version 1"),
    (lambda d: _edit_json(d, threshold="high"), "'threshold' must be a number"),
    (lambda d: _edit_json(d, window=0), "'window' must be >= 1"),
    (lambda d: np.savez(d / "weights.npz", w=np.zeros(3)), "weights.npz does not fit"),
    (lambda d: np.savez(d / "preprocessor.npz", log_mean_=np.array([{"a": 1}], dtype=object)),
     "not a readable npz"),
    (lambda d: (d / "scorer.json").write_text("{not json"), "no readable scorer.json"),
])
def test_damaged_model_files_are_refused_with_a_clear_error(tiny_model, tmp_path, damage,
                                                             message):
    import shutil

    folder = tmp_path / "scorer"
    shutil.copytree(Path(tiny_model[0]) / "artifacts" / "scorer", folder)
    damage(folder)
    with pytest.raises(ModelFormatError, match=message):
        Scorer.load(folder)


def _edit_json(folder: Path, **changes) -> None:
    meta = json.loads((folder / "scorer.json").read_text())
    meta.update(changes)
    (folder / "scorer.json").write_text(json.dumps(meta))


def test_a_reloaded_architecture_reuses_a_compiled_network_and_scores_with_its_own_weights(
        tiny_model, tmp_path):
    """A Scorer that is gone leaves its compiled network to the next Scorer of the same
    architecture; with the new model's weights loaded it scores exactly as that model's own,
    freshly built network does."""
    import shutil

    from ids.artifact import modelfile

    original = next(Path(tiny_model[0]).rglob("scorer.json")).parent
    other = shutil.copytree(original, tmp_path / "other")
    weights = modelfile.read_npz(other / "weights.npz")
    rng = np.random.default_rng(0)
    modelfile.write_npz(other / "weights.npz", {k: (a + rng.normal(0, 0.3, a.shape)).astype(
        np.float32) for k, a in weights.items()})
    flows = synthetic.generate(600, 5, dict(tiny_model[2].data.class_mix))
    own = Scorer.load(original)  # alive throughout: its network is its own
    first = Scorer.load(other)
    expected = first.predict(flows)
    network = first.model
    del first  # gone: its network waits for the next Scorer of this architecture
    again = Scorer.load(original)
    assert again.model is network
    pd.testing.assert_frame_equal(again.predict(flows), own.predict(flows))
    assert not expected["score"].equals(own.predict(flows)["score"])  # the weights differ
