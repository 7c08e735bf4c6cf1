"""The hostile round of issue 41 that crosses a network or a store: passwords of any character
out of every output path, stores that fail fast (an unreachable tracking server, special
files where a SQLite store or its lock file should be), and a scoring server with limits
(body size, JSON nesting, malformed requests, MLflow 1.x content types, a busy port).

Cheap by design: functions and the ASGI app in this process (no compilation: the app's warm-up
is skipped and the requests that reach scoring are few), real MLflow SQLite stores and real
sockets in tmp_path; a real server process only in tests/test_serve_load.py (slow).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import socket
import string
import sys
import threading
import time

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile import assert_one_line

from conftest import V1_SAMPLE, patience, run_cli_status
from ids.serving import body as bodies
from ids.serving import http as serving
from ids.tracking import database, redact, registry
from ids.tracking.database import StoreError
from ids.tracking.redact import redact as redacted_text
from world import mlflow_store

SECRET = "Qx9-S3cr3t-Z7q"
# a password may hold any character but white space: these are the ones URL parsers split on
AWKWARD = ["a/b", "p@ss", "a:b:c", "%2F%40%3A", "a#b", "a?b=c", "/", "@", "a'b\"c", "a\\b"]


def _uris(password: str) -> list[str]:
    return [f"http://admin:{password}@mlflow.example:5000",
            f"postgresql://ids:{password}@db.example:5432/optuna",
            f"postgresql+psycopg2://ids:{password}@db.example/optuna?sslmode=require"]


def _contexts(uri: str) -> list[str]:
    """Where a URI reaches a user: an error line (quoted and as repr), MLflow's run links,
    Hydra's `--cfg job` (YAML), a log line."""
    return [uri, f"error: tracking.uri='{uri}' cannot be reached (OperationalError: x)",
            f"error: model_uri={uri!r}: no such model",
            f"\U0001f3c3 View run tiny at: {uri}/#/experiments/1/runs/0123abcd\n",
            yaml.safe_dump({"tracking": {"uri": uri, "experiment": "ids"}}, allow_unicode=True),
            f"2026-12-07 11:00:00 [mlflow] WARNING retrying {uri}/api/2.0/mlflow/runs/get"]


def _hidden(password: str, text: str) -> bool:
    """The whole password is gone: `user:***@` stands where it was."""
    out = redacted_text(text)
    return ":***@" in out and password not in out and "Qx9" not in out and "Z7q" not in out


@pytest.mark.parametrize("password", AWKWARD)
def test_a_password_of_any_character_is_redacted_in_every_context(password):
    password = f"Qx9{password}Z7q"  # markers: any part of it left behind shows
    for uri in _uris(password):
        for text in _contexts(uri):
            assert _hidden(password, text), (password, text, redacted_text(text))


_PASSWORD_CHARS = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(middle=st.lists(_PASSWORD_CHARS | st.sampled_from(list(string.punctuation)) |
                       st.sampled_from(["%2F", "%40", "%25"]), min_size=1, max_size=16
                       ).map("".join),
       which=st.integers(0, 2), context=st.integers(0, 5))
def test_generated_passwords_never_survive_redaction(middle, which, context):
    password = f"Qx9{middle}Z7q"
    text = _contexts(_uris(password)[which])[context]
    assert _hidden(password, text), (password, text, redacted_text(text))


def test_redaction_reads_the_environment_while_another_thread_changes_it(monkeypatch):
    """`KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'`: MLflow's telemetry thread unset a variable
    while redact iterated os.environ. The names are a snapshot now; MLflow's telemetry is off."""
    monkeypatch.setenv("IDS_TEST_PASSWORD", SECRET)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.environ["_IDS_TEST_CHURN_TOKEN"] = "x" * 12
            os.environ.pop("_IDS_TEST_CHURN_TOKEN", None)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 0.25
        while time.monotonic() < deadline:
            assert redacted_text(f"pw {SECRET}") == "pw ***"
    finally:
        stop.set()
        thread.join()
    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY")  # ids/__init__.py sets it unless set


PG = f"postgresql://u:{SECRET}/x@127.0.0.1:1/db"  # a '/' in the password


def test_cfg_job_and_cfg_all_print_no_password(monkeypatch, capsys, tmp_path):
    for what in ("job", "all"):
        code, out, err = run_cli_status(monkeypatch, capsys, "ids.run", "--cfg", what,
                                        f"tracking.uri={PG}", f"hydra.run.dir={tmp_path}/h")
        assert code == 0, err[-2000:]
        assert "uri: postgresql://u:***@127.0.0.1:1/db" in out
        assert SECRET not in out + err


def test_hydra_copies_of_the_config_hold_no_password(monkeypatch, capsys, tmp_path):
    """With `hydra.output_subdir` set (ids sets it null), .hydra/ holds the config, Hydra's
    own config and the overrides: redacted."""
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.predict", f"tracking.uri={PG}",
                                  f"hydra.run.dir={tmp_path}/h", "hydra.output_subdir=.hydra")
    assert_one_line(code, err, "input and output are required")
    files = {p.name: p.read_text() for p in (tmp_path / "h" / ".hydra").iterdir()}
    assert set(files) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert all("u:***@127.0.0.1" in text and SECRET not in text for text in files.values())
    assert yaml.safe_load(files["config.yaml"])["tracking"]["uri"] == (
        "postgresql://u:***@127.0.0.1:1/db")


def test_mlflows_run_link_is_printed_without_the_password(tmp_path, monkeypatch, capsys):
    """MLflow prints "View run ... at: <tracking URI>/#/..." to stdout when a run ends on an
    http(s) server, password included: a real run of a SQLite store, shown by MLflow's own
    code for a server URI with a password; a command's stdout redacts it."""
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    local = MlflowClient(mlflow_store(tmp_path / "mlruns" / "mlflow.db"))
    run = local.create_run(local.create_experiment("links"))
    server = TrackingServiceClient(f"http://ids:{SECRET}/x@127.0.0.1:1")
    monkeypatch.setattr(server.store, "get_run", local.get_run)
    server._log_url(run.info.run_id)
    assert SECRET in capsys.readouterr().out  # what MLflow prints by itself
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # restored after the test
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    redact.install()  # what every command does first (ids.cli, sweep workers)
    server._log_url(run.info.run_id)
    out = capsys.readouterr().out
    assert "View run" in out and "http://ids:***@127.0.0.1:1/#/experiments/" in out
    assert SECRET not in out


def test_an_error_line_with_a_slash_in_the_password_is_redacted(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.predict", f"hydra.run.dir={tmp_path}/h",
                                  "model_uri=models:/ids-cnn-bilstm@champion", "input=a.csv",
                                  f"output={tmp_path}/o.csv", f"tracking.uri={PG}")
    assert_one_line(code, err, "tracking.uri=postgresql://u:***@127.0.0.1:1/db cannot be reached")
    assert SECRET not in err


# --- stores that fail fast ---------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_tracking_server_is_one_line_within_seconds(monkeypatch, capsys, tmp_path):
    """MLflow retried for minutes; the probe of /health says it at once (nothing listens)."""
    uri = f"http://ids:{SECRET}@127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.predict", f"hydra.run.dir={tmp_path}/h",
                                  "model_uri=models:/ids-cnn-bilstm@champion", "input=a.csv",
                                  f"output={tmp_path}/o.csv", f"tracking.uri={uri}")
    assert time.monotonic() - started < patience(10)  # MLflow's own retries take minutes
    assert_one_line(code, err, "tracking.uri=http://ids:***@127.0.0.1:", "cannot be reached",
                    "ConnectionRefusedError")
    assert SECRET not in err


def test_a_server_that_never_answers_fails_after_the_probe_timeout(monkeypatch):
    monkeypatch.setattr(database, "PROBE_SECONDS", 0.3)
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        uri = f"http://u:{SECRET}@127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"cannot be reached \(no answer within 0.3 s\)") as e:
            database.check_reachable(uri, "tracking.uri")
    assert time.monotonic() - started < patience(5) and SECRET not in str(e.value)


def test_any_http_answer_is_a_server(monkeypatch):
    """A server that answers /health with an error (a login, a proxy's 404) is reachable:
    MLflow then says what is wrong in its own words."""
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_error(404)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            database.check_reachable(f"http://127.0.0.1:{httpd.server_address[1]}/mlflow",
                                     "tracking.uri")
        finally:
            httpd.shutdown()
    with pytest.raises(StoreError, match="not a valid URL"):  # the "port" would be a password
        database.check_reachable(f"http://u:{SECRET}/x@h:1", "tracking.uri")


@pytest.mark.parametrize("end", database.SQLITE_FILES)
@pytest.mark.parametrize("kind", ["FIFO", "folder"])
def test_a_special_file_in_a_sqlite_store_is_refused_without_blocking(tmp_path, end, kind):
    db = tmp_path / "mlruns" / "mlflow.db"
    uri = mlflow_store(db) if end else f"sqlite:///{db}"
    db.parent.mkdir(exist_ok=True)
    path = db.with_name(db.name + end)
    path.unlink(missing_ok=True)
    os.mkfifo(path) if kind == "FIFO" else path.mkdir()
    what = "a FIFO (named pipe)" if kind == "FIFO" else "a folder"
    for key in ("tracking.uri", "sweep.storage"):
        with pytest.raises(StoreError, match=f"{key}=sqlite:///.* is {re.escape(what)}; a SQL"):
            database.check_reachable(uri, key)
    if end == "":
        with pytest.raises(StoreError, match=f"mlflow.db is {re.escape(what)}"):  # not "no store"
            registry.connect(uri)


def test_the_lock_file_as_a_fifo_never_blocks(tmp_path):
    db = tmp_path / "mlflow.db"
    os.mkfifo(tmp_path / "mlflow.db.lock")
    with pytest.raises(StoreError, match="mlflow.db.lock is not a regular file"):
        with database.first_use_lock(db):
            pass
    reader = os.open(tmp_path / "mlflow.db.lock", os.O_RDONLY | os.O_NONBLOCK)  # a reader now
    try:
        with pytest.raises(StoreError, match="mlflow.db.lock is not a regular file"):
            with database.first_use_lock(db):
                pass
    finally:
        os.close(reader)


def test_a_training_run_on_a_store_with_a_fifo_lock_is_one_line(monkeypatch, capsys, tmp_path):
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    os.mkfifo(tmp_path / "mlruns" / "mlflow.db.lock")
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.run", f"hydra.run.dir={tmp_path}/h",
                                  f"tracking.uri={uri}", f"cache_dir={tmp_path}/cache",
                                  "data.n_flows=1000")
    assert_one_line(code, err, "mlflow.db.lock is a FIFO (named pipe)")


# --- the scoring server's limits -----------------------------------------------------------------

@pytest.fixture(scope="module")
def app(tiny_model, tmp_path_factory):
    """The app of one worker with the tiny model and a 64 KiB body limit; no warm-up (these
    requests end before scoring, or score a few flows)."""
    folder = registry.download_model(str(tiny_model[0]), tmp_path_factory.mktemp("net-app"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(serving.FOLDER, str(folder))
        mp.setenv(serving.MAX_BODY, str(64 << 10))
        mp.setattr("ids.artifact.scorer.Scorer.warm_up", lambda self: [])
        yield serving.create_app()


def _call(app, body: bytes = b"", headers: dict | None = None, chunk: int | None = None):
    """One POST /invocations through the ASGI app: (status, headers, JSON answer, how many
    body messages the app asked for). `chunk`: the body in messages of that size, with no
    Content-Length (a chunked request)."""
    headers = {"content-type": "application/json", **(headers or {})}
    if chunk is None:
        headers.setdefault("content-length", str(len(body)))
        parts = [body]
    else:
        parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    asked, sent = [0], []

    async def receive():
        i = asked[0]
        asked[0] += 1
        return {"type": "http.request", "body": parts[i], "more_body": i < len(parts) - 1}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    answer = json.loads(sent[1]["body"])
    return sent[0]["status"], dict(sent[0]["headers"]), answer, asked[0]


def test_a_body_over_the_limit_is_413_by_its_length_or_as_it_arrives(app):
    big = b" " * (200 << 10)
    status, headers, answer, asked = _call(app, big)
    assert (status, answer["error_code"], asked) == (413, "REQUEST_TOO_LARGE", 0)  # never read
    assert "at most 0.0625 MiB (serve.max_body_mb)" in answer["message"]
    assert "Content-Length says 204,800 bytes" in answer["message"]
    assert headers[b"connection"] == b"close"
    status, headers, answer, asked = _call(app, big, chunk=16 << 10)
    assert status == 413 and "the body is longer" in answer["message"]
    assert asked == 5  # 4 x 16 KiB held, the 5th would pass 64 KiB: nothing more is read


@pytest.mark.parametrize("body, headers, status, says", [
    (b"[" * 60_000, {}, 400, "nests more than 64 levels deep"),
    (b'{"dataframe_records": [{"IN_BYTES": ' + b"[" * 70 + b"]" * 70 + b"}]}", {}, 400,
     "nests more than 64"),
    (b'{"dataframe_records": [{"IN_BYTES": [1, 2]}]}', {}, 400,
     "column 'IN_BYTES', row 0 (0-based) holds a JSON list"),
    (b'{"inputs": {"IN_BYTES": 1}}', {}, 400, "inputs does not describe a table"),
    (b'{"dataframe_split": "x"}', {}, 400, "dataframe_split does not describe a table"),
    (b'{"dataframe_split": {"columns": [{}], "data": [[1]]}}', {}, 400, "missing columns"),
    (b"{}", {"content-length": "ten"}, 400, "Content-Length header is not one whole number"),
    (b"{}", {"content-length": "-1"}, 400, "Content-Length header is not one whole number"),
    (b"{}", {"content-type": "application/json; format=tf-serving"}, 415, "format='tf-serving'"),
    (b"a,b\n1,2\n1,2,3\n", {"content-type": "text/csv"}, 400, "Expected 2 fields in line 3"),
])
def test_every_malformed_request_is_answered_in_json(app, body, headers, status, says):
    got, _, answer, _ = _call(app, body, headers)
    assert got == status and says in answer["message"], answer
    assert answer["error_code"] in ("BAD_REQUEST", "UNSUPPORTED_MEDIA_TYPE")
    assert "\n" not in answer["message"]


def test_a_timestamp_in_a_counter_is_a_400_naming_the_column_and_row(app):
    flows = pd.read_csv(V1_SAMPLE, nrows=3) if V1_SAMPLE.exists() else pytest.skip("no sample")
    records = json.loads(flows.to_json(orient="records"))
    records[1]["IN_BYTES"] = "2024-01-01 10:00:00"
    status, _, answer, _ = _call(app, json.dumps({"dataframe_records": records}).encode())
    assert status == 400 and "'IN_BYTES'" in answer["message"], answer
    assert "row 1" in answer["message"] and "2024-01-01 10:00:00" in answer["message"]


def test_a_bug_is_a_json_500_and_a_redacted_traceback(app, monkeypatch, capsys):
    def broken(scorer, flows):
        raise ZeroDivisionError(f"while reading postgresql://u:{SECRET}@h/db")

    monkeypatch.setattr(serving, "predictions", broken)
    status, _, answer, _ = _call(app, b'{"dataframe_records": [{"IN_BYTES": 1}]}')
    assert status == 500 and answer["error_code"] == "INTERNAL_ERROR"
    assert answer["message"].startswith("ZeroDivisionError while scoring the request")
    err = capsys.readouterr().err
    assert "Traceback" in err and "u:***@h/db" in err and SECRET not in err


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8; format=pandas-records",
    "application/json; format=pandas-records; charset=UTF-8",
    'application/json;charset="utf-8";format=pandas-split',
])
def test_mlflow_1_content_types_are_read(content_type):
    """MLflow 1.x clients name the layout in the content type (the charset parser swallowed
    the rest of the header: 415)."""
    records = [{"IN_BYTES": 1, "OUT_BYTES": 2}, {"IN_BYTES": 3, "OUT_BYTES": 4}]
    body = ({"columns": ["IN_BYTES", "OUT_BYTES"], "data": [[1, 2], [3, 4]]}
            if "split" in content_type else records)
    got = bodies.parse_flows(json.dumps(body).encode(), content_type)
    pd.testing.assert_frame_equal(got, pd.DataFrame(records))
    wrapped = json.dumps({"dataframe_records": records}).encode()  # the new protocol too
    pd.testing.assert_frame_equal(bodies.parse_flows(wrapped, content_type), pd.DataFrame(records))


def _depth(doc) -> int:
    if isinstance(doc, list):
        return 1 + max(map(_depth, doc), default=0)
    if isinstance(doc, dict):
        return 1 + max(map(_depth, doc.values()), default=0)
    return 0


_TREES = st.recursive(
    st.none() | st.integers() | st.text('[]{}"\\ab', max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text('[]{}"\\a', max_size=3),
                                                                kids, max_size=3),
    max_leaves=25)


@settings(max_examples=60, deadline=None)
@given(doc=_TREES, block=st.integers(1, 8))
def test_the_nesting_count_is_exact_whatever_the_strings_hold(doc, block):
    """Brackets and escaped quotes inside strings, read in blocks that cut anywhere."""
    body = json.dumps(doc).encode()
    assert bodies.json_depth(body, limit=10**6, block=block) == _depth(doc)


def test_serve_checks_its_port_before_it_loads_the_model(monkeypatch, capsys, tmp_path):
    """A second server on a busy port loaded and compiled the model, then exited 3 with
    uvicorn's message; the model here does not even exist: the port is said first."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run_cli_status(monkeypatch, capsys, "ids.serve",
                                      f"hydra.run.dir={tmp_path}/h", f"serve.port={port}",
                                      f"model_uri={tmp_path}/no-model")
    assert_one_line(code, err, f"serve.port={port} on 127.0.0.1 cannot be used",
                    "another server listens there")
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.serve", f"hydra.run.dir={tmp_path}/h",
                                  "serve.host=no-such-host.invalid",
                                  f"model_uri={tmp_path}/no-model")
    assert_one_line(code, err, "serve.host=no-such-host.invalid: not an address of this machine")


def test_the_body_limit_is_a_checked_setting(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli_status(monkeypatch, capsys, "ids.serve", f"hydra.run.dir={tmp_path}/h",
                                  "serve.max_body_mb=0")
    assert_one_line(code, err, "serve.max_body_mb must be in [1, 4,096]")

