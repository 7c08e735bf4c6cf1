"""ids.predict on a real tiny model: chunked reading gives the whole-file output exactly.

Loading by models:/ and runs:/ URIs is covered in test_promote.py (a real registry)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, tiny_overrides
from ids.config import ConfigError
from ids.data import synthetic
from ids.data.flows import DataError
from ids.serving.files import predict_file
from ids.tracking.registry import ModelNotFound, load_scorer, resolve_model


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_model):
    """The session's tiny real model (window 4: each flow's window reaches 3 flows back), saved
    as an MLflow pyfunc folder (no tracking store needed), and a 3,000-flow file it never saw."""
    tmp = tmp_path_factory.mktemp("predict")
    uri, _, cfg = tiny_model
    flows = synthetic.generate(3000, 7, dict(cfg.data.class_mix))
    path = tmp / "flows.csv"
    flows.to_csv(path, index=False)
    # The reference: the whole file in one chunk, the model loaded from its URI.
    assert predict_file(uri, path, tmp / "whole.csv", chunk_size=10**6) == 3000
    return tmp, uri, flows, path


@pytest.fixture(scope="module")
def scorer(model):
    return load_scorer(resolve_model(model[1]))


def test_chunked_output_equals_whole_file(model, scorer):
    tmp, uri, flows, path = model
    whole, chunked = tmp / "whole.csv", tmp / "chunked.csv"
    assert predict_file(uri, path, chunked, chunk_size=333, scorer=scorer) == 3000
    assert chunked.read_bytes() == whole.read_bytes()

    out = pd.read_csv(whole)
    assert list(out.columns) == ["flow", "IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR",
                                 "L4_DST_PORT", "Label", "Attack", "score", "label"]
    assert out["flow"].tolist() == list(range(3000))
    pd.testing.assert_frame_equal(out[["Label", "Attack"]], flows[["Label", "Attack"]])
    # The scores are the model's on the whole file, windows running across chunk borders.
    expected = scorer.score_matrix(scorer.transform(flows))
    np.testing.assert_array_equal(out["score"].to_numpy(np.float32), expected)
    assert (out["label"] == (expected >= scorer.threshold)).all()
    assert 0 < scorer.threshold < 1 and scorer.context_rows == 3
    # MLflow's pyfunc (one batch shape per call) agrees to float32 rounding.
    pyfunc = mlflow.pyfunc.load_model(uri).predict(flows)
    np.testing.assert_allclose(pyfunc["score"], expected, atol=1e-6)


def test_chunks_smaller_than_the_window_and_gzip(model, scorer):
    """Chunks of 2 flows (< 3 context rows): the context is carried over several chunks."""
    tmp, _, flows, _ = model
    gz = tmp / "head.csv.gz"
    flows.iloc[:100].to_csv(gz, index=False)
    out = tmp / "head-alerts.csv.gz"
    assert predict_file(None, gz, out, chunk_size=2, scorer=scorer) == 100
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp / "whole.csv").iloc[:100])


def test_unlabelled_flows(model, scorer):
    tmp, _, flows, _ = model
    path = tmp / "new.csv"
    flows.drop(columns=["Label", "Attack"]).iloc[:500].to_csv(path, index=False)
    out = tmp / "new-alerts.csv"
    assert predict_file(None, path, out, chunk_size=100, scorer=scorer) == 500
    got = pd.read_csv(out)
    assert "Label" not in got.columns and "Attack" not in got.columns
    ref = pd.read_csv(tmp / "whole.csv").iloc[:500]
    np.testing.assert_array_equal(got["score"], ref["score"])


def test_bad_input(model, scorer):
    tmp, uri, flows, _ = model
    path, out = tmp / "bad.csv", tmp / "bad-alerts.csv"
    flows.drop(columns=["TCP_FLAGS"]).to_csv(path, index=False)
    with pytest.raises(DataError, match="TCP_FLAGS"):
        predict_file(uri, path, out, chunk_size=1000, scorer=scorer)
    assert not out.exists() and not (tmp / "bad-alerts.csv.partial").exists()
    bad = flows.copy()
    bad["IN_BYTES"] = bad["IN_BYTES"].astype(object)
    bad.loc[2500, "IN_BYTES"] = "lots"
    bad.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"IN_BYTES.*row 2500 .*'lots'"):  # row in the file
        predict_file(uri, path, out, chunk_size=1000, scorer=scorer)
    assert not out.exists()
    with pytest.raises(DataError, match="not found"):
        predict_file(uri, tmp / "absent.csv", out, scorer=scorer)
    with pytest.raises(ConfigError, match="overwrite"):
        predict_file(uri, path, path, scorer=scorer)
    with pytest.raises(ModelNotFound, match="neither a model folder"):
        predict_file(str(tmp / "no-model"), path, out)


def test_main_writes_alerts_and_fails_cleanly(model, monkeypatch, capsys):
    tmp, uri, _, path = model
    out = tmp / "cli.csv"
    base = [*tiny_overrides(tmp), f"hydra.run.dir={tmp}/hydra", f"model_uri={uri}",
            f"input={path}"]
    run_cli(monkeypatch, "ids.predict", *base, f"output={out}", "chunk_size=700")
    assert "scored 3,000 flows" in capsys.readouterr().out
    assert out.read_bytes() == (tmp / "whole.csv").read_bytes()

    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, "ids.predict", *base)  # no output=
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: input and output are required")
