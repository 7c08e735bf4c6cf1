"""`make serve` / `python -m ids.serve`: the champion over HTTP, MLflow's scoring protocol.

    python -m ids.serve model_uri=models:/ids-cnn-bilstm@champion serve.port=5001

`POST /invocations` takes what MLflow's scoring server takes for a DataFrame model: JSON with
`dataframe_split`, `dataframe_records`, `instances` or `inputs`, or a CSV body (`text/csv`,
header line first), and answers `{"predictions": [{"score": ..., "label": ...}, ...]}`, one per
flow, in order; `GET /ping` and `/health` answer 200. A worker accepts connections only once
it has loaded the model and compiled every batch shape (it then prints `worker PID ready`), so
no request waits for a compilation. Flows that cannot be scored, and bodies that are not JSON
or CSV, get 400 (415 for another content type or charset) with
`{"error_code": "BAD_REQUEST", "message": <the one-line reason>}`.

Why not `mlflow models serve`: its request path (FastAPI, the DataFrame schema checks, a thread
hand-off per request, JSON both ways through pandas) costs about twice the scoring itself on
two cores, and it runs the code logged with the model. This app is a bare ASGI callable on
uvicorn (httptools, uvloop) that reads the model as data (`Scorer.load`) with this checkout's
code. The model is resolved and downloaded once, by the command: every worker serves the same
version even if the alias moves while they start. Scoring runs on the event loop, one request
at a time per worker (it is CPU-bound): requests queue on their worker, and the workers (one
per core) are the concurrency.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ids.artifact import memo
from ids.artifact.hosts import MAX_HOSTS
from ids.artifact.scorer import Scorer
from ids.config import ConfigError
from ids.data.flows import DataError
from ids.model.runtime import setup_runtime
from ids.tracking import registry

FOLDER, THREADS, MEMO = "IDS_SERVE_FOLDER", "IDS_SERVE_THREADS", "IDS_SERVE_MEMO_MB"  # to workers
HOSTS = "IDS_SERVE_MAX_HOSTS"
JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class BadRequest(ValueError):
    """A request that cannot be scored: HTTP `status` with the one-line reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_flows(body: bytes, content_type: str) -> pd.DataFrame:
    """The flows of a request body, as MLflow's scoring server would read them."""
    mime, _, params = (content_type or "application/json").partition(";")
    charset = params.partition("charset=")[2].strip().lower() or "utf-8"
    if charset != "utf-8":
        raise BadRequest(f"charset {charset!r}: send UTF-8", 415)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 text ({exc})") from exc
    mime = mime.strip().lower()
    if mime == "text/csv":
        try:
            return pd.read_csv(io.StringIO(text), low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise BadRequest(f"the body is not CSV with a header line ({exc})") from exc
    if mime != "application/json":
        raise BadRequest(f"Content-Type {mime!r}: send application/json or text/csv", 415)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc}); send "
                         '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}') from exc
    keys = [k for k in JSON_KEYS if isinstance(doc, dict) and k in doc]
    if len(keys) != 1:
        has = sorted(doc)[:6] if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise BadRequest(f"the JSON body must hold exactly one of {list(JSON_KEYS)} (MLflow's "
                         f"scoring protocol), but it has {has}")
    data = doc[keys[0]]
    try:
        if keys[0] == "dataframe_split":
            return pd.DataFrame(data["data"], columns=data["columns"])
        return pd.DataFrame(data)  # records: a list of {column: value}; inputs may be columns
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"{keys[0]} does not describe a table ({type(exc).__name__}: "
                         f"{exc}); dataframe_split needs 'columns' and 'data'") from exc


def predictions(scorer: Scorer, flows: pd.DataFrame) -> bytes:
    """The JSON answer for `flows`; DataError (bad flows) becomes a 400."""
    try:
        scores = scorer.scores(flows)  # a grouped model: each host's flows of earlier requests
    except DataError as exc:
        raise BadRequest(" ".join(str(exc).split())) from exc
    labels = (scores >= scorer.threshold).astype(np.int64)
    rows = [{"score": s, "label": k} for s, k in zip(scores.tolist(), labels.tolist(),
                                                      strict=True)]
    return json.dumps({"predictions": rows}).encode()


def _error(exc: BadRequest) -> tuple[int, bytes]:
    code = "BAD_REQUEST" if exc.status == 400 else "UNSUPPORTED_MEDIA_TYPE"
    return exc.status, json.dumps({"error_code": code, "message": str(exc)}).encode()


def create_app():
    """The ASGI app of one worker: loads the model folder the command downloaded, compiles
    every batch shape, then serves (uvicorn calls this in each worker process)."""
    setup_runtime(SimpleNamespace(mode="graph", threads=int(os.environ.get(THREADS) or 0)))
    scorer = Scorer.load(os.environ[FOLDER])
    scorer.memo = memo.from_config(os.environ.get(MEMO) or memo.MEMO_MB)
    scorer.hosts = scorer.host_state(int(os.environ.get(HOSTS) or MAX_HOSTS))
    shapes = scorer.warm_up()
    print(f"worker {os.getpid()} ready ({len(shapes)} batch shapes compiled)", file=sys.stderr,
          flush=True)

    async def send_answer(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"].rstrip("/") or "/")
        if route in (("GET", "/ping"), ("GET", "/health")):
            return await send_answer(send, 200, b"\n")
        if route != ("POST", "/invocations"):
            return await send_answer(send, 404, json.dumps({
                "error_code": "NOT_FOUND", "message": f"{route[0]} {route[1]}: this server "
                "answers POST /invocations, GET /ping and GET /health"}).encode())
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        content_type = next((v.decode("latin-1") for k, v in scope["headers"]
                             if k == b"content-type"), "application/json")
        try:
            status, body = 200, predictions(scorer, parse_flows(b"".join(chunks), content_type))
        except BadRequest as exc:
            status, body = _error(exc)
        await send_answer(send, status, body)

    return app


def serve(cfg) -> None:
    """Resolve and download the model once, check it, then run uvicorn with `serve.workers`
    workers (0: one per core), each with `serve.threads` kernel threads (0: cores / workers)."""
    import uvicorn

    s = cfg.serve
    if not 1 <= int(s.port) <= 65535:
        raise ConfigError(f"serve.port must be in [1, 65535], but got {s.port}")
    if int(s.workers) < 0 or int(s.threads) < 0:
        raise ConfigError(f"serve.workers and serve.threads must be >= 0 (0: sized to the "
                          f"machine), but got {s.workers} and {s.threads}")
    cores = os.cpu_count() or 1
    workers = int(s.workers) or cores
    threads = int(s.threads) or max(1, cores // workers)
    memo.from_config(cfg.score_memo_mb)  # a bad value fails here, not in each worker
    uri = registry.default_model_uri(cfg)
    if registry.needs_store(uri):
        registry.connect(cfg.tracking.uri)
    ref = registry.resolve_model(uri)
    with tempfile.TemporaryDirectory(prefix="ids-serve-") as tmp:
        folder = registry.download_model(ref.pinned_uri, Path(tmp))
        window = Scorer.load(folder).window  # a broken model stops here, not in each worker
        os.environ.update({FOLDER: str(folder), THREADS: str(threads),
                           MEMO: str(int(cfg.score_memo_mb)),
                           HOSTS: str(int(cfg.score_max_hosts))})
        print(f"serving {ref.label} (window {window}) on http://{s.host}:{s.port}/invocations: "
              f"{workers} worker(s) x {threads} kernel thread(s); a worker takes connections "
              "once it has compiled its batch shapes", flush=True)
        uvicorn.run("ids.serving.http:create_app", factory=True, host=str(s.host),
                    port=int(s.port), workers=workers, lifespan="off", access_log=False,
                    log_level="warning")
