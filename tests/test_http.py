"""Issue 23, the server's request path (`ids.serving.http`) in process: MLflow's scoring protocol
read the way MLflow's server reads it (JSON split/records/instances/inputs, CSV), the answer
equal to `Scorer.predict`, and every bad request a 400/415 whose message is the one-line reason.
The app itself is driven as ASGI, with the tiny real model; real HTTP under load is
`tests/test_serve_load.py` (slow)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest

from conftest import V1_SAMPLE
from ids.config import ConfigError, compose
from ids.serving import body as request_body
from ids.serving import http
from ids.tracking import registry


@pytest.fixture(scope="module")
def flows():
    if not V1_SAMPLE.exists():
        pytest.skip(f"{V1_SAMPLE} is absent: the real NF-BoT-IoT samples live in ../shared/data/")
    return pd.read_csv(V1_SAMPLE, nrows=50)


def test_every_body_mlflow_accepts_reads_as_the_same_flows(flows):
    part = flows.iloc[:5]
    split = json.loads(part.to_json(orient="split", index=False))
    records = json.loads(part.to_json(orient="records"))
    bodies = [(json.dumps({"dataframe_split": split}), "application/json"),
              (json.dumps({"dataframe_records": records}), "application/json; charset=utf-8"),
              (json.dumps({"instances": records}), "application/json"),
              (json.dumps({"inputs": {c: part[c].tolist() for c in part}}), "application/json"),
              (part.to_csv(index=False), "text/csv")]
    for body, content_type in bodies:
        got = request_body.parse_flows(body.encode(), content_type)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), part.reset_index(drop=True),
                                      check_dtype=False)


@pytest.mark.parametrize("body, content_type, status, says", [
    (b'{"dataframe_split": {"columns": ["IN_BYTES"', "application/json", 400, "not valid JSON"),
    (b'{"data": [[1]]}', "application/json", 400, "exactly one of"),
    (b'[1, 2]', "application/json", 400, "exactly one of"),
    (b'{"dataframe_split": {"data": [[1]]}}', "application/json", 400, "'columns' and 'data'"),
    (b"x", "text/plain", 415, "send application/json or text/csv"),
    (b"a,b", "text/csv; charset=latin-1", 415, "send UTF-8"),
    (b"\xff\xfe", "text/csv", 400, "not UTF-8"),
    (b"", "text/csv", 400, "not CSV"),
])
def test_a_body_that_is_not_a_table_is_refused_with_the_reason(body, content_type, status, says):
    with pytest.raises(request_body.BadRequest) as info:
        request_body.parse_flows(body, content_type)
    assert info.value.status == status and says in str(info.value)


def _call(app, method: str, path: str, body: bytes = b"",
          content_type: str = "application/json") -> tuple[int, dict]:
    """One request through the ASGI app, as uvicorn makes it."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path,
             "headers": [(b"content-type", content_type.encode())]}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    text = sent[1]["body"]
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(text)).encode()
    return status, (json.loads(text) if text.strip() else {})


def test_the_app_scores_like_the_scorer_and_answers_bad_flows_with_400(tiny_model, flows,
                                                                       tmp_path, monkeypatch):
    folder = registry.download_model(str(tiny_model[0]), tmp_path)
    monkeypatch.setenv(http.FOLDER, str(folder))
    app = http.create_app()
    assert _call(app, "GET", "/ping")[0] == 200 and _call(app, "GET", "/health")[0] == 200
    status, answer = _call(app, "GET", "/invocations")
    assert status == 404 and "POST /invocations" in answer["message"]

    split = json.loads(flows.to_json(orient="split", index=False))
    body = json.dumps({"dataframe_split": split}).encode()
    status, answer = _call(app, "POST", "/invocations", body)
    assert status == 200
    got = pd.DataFrame(answer["predictions"])
    expected = tiny_model[1].predict(flows)
    assert list(got.columns) == ["score", "label"]
    assert (got["label"].to_numpy() == expected["label"].to_numpy()).all()
    np.testing.assert_array_equal(got["score"].to_numpy(np.float32), expected["score"].to_numpy())

    broken = json.loads(flows.drop(columns=["TCP_FLAGS"]).iloc[:3].to_json(orient="split",
                                                                            index=False))
    status, answer = _call(app, "POST", "/invocations",
                           json.dumps({"dataframe_split": broken}).encode())
    assert status == 400 and answer["error_code"] == "BAD_REQUEST"
    assert answer["message"].startswith("missing columns ['TCP_FLAGS']")
    assert "\n" not in answer["message"]
    csv = flows.to_csv(index=False).encode()
    status, answer = _call(app, "POST", "/invocations", csv, "text/csv")
    assert status == 200 and len(answer["predictions"]) == len(flows)


def test_serve_refuses_bad_settings_and_missing_models_before_any_worker_starts(tmp_path):
    cfg = compose(["serve.port=0", f"model_uri={tmp_path}/no-model"])
    with pytest.raises(ConfigError, match=r"serve.port must be in \[1, 65535\]"):
        http.serve(cfg)
    cfg = compose(["serve.workers=-1"])
    with pytest.raises(ConfigError, match="serve.workers and serve.threads must be >= 0"):
        http.serve(cfg)
    cfg = compose([f"model_uri={tmp_path}/no-model"])
    with pytest.raises(registry.ModelNotFound, match="neither a model folder"):
        http.serve(cfg)


def test_a_model_with_host_state_is_served_by_one_worker_unless_more_are_asked_for():
    from ids.serving.http import sized

    assert sized(0, 0, 8, stateful=False) == (8, 1)  # one worker per core
    assert sized(0, 0, 8, stateful=True) == (1, 8)  # its state is one worker's memory
    assert sized(3, 0, 8, stateful=True) == (3, 2)  # asked for: each keeps its own (warned)
    assert sized(2, 5, 8, stateful=False) == (2, 5)
