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

Limits: a body may hold at most `serve.max_body_mb` (16 MiB by default; 413 when its
Content-Length says more, or once a chunked body passes it: never more than that is held);
JSON nested deeper than 64 levels (`ids.serving.body`), a malformed Content-Length, cells that are JSON
lists or objects and every other request that cannot be read get 400 with a JSON body; a bug
gets 500 with a JSON body (its traceback, redacted, in the log). The port is checked before
the model is loaded: a busy port is one line, exit code 2.

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

import errno
import json
import os
import socket
import sys
import tempfile
import traceback
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
from ids.serving.body import STATUS_CODES, BadRequest, parse_flows, read_body
from ids.tracking import registry
from ids.tracking.redact import redact

FOLDER, THREADS, MEMO = "IDS_SERVE_FOLDER", "IDS_SERVE_THREADS", "IDS_SERVE_MEMO_MB"  # to workers
MAX_BODY = "IDS_SERVE_MAX_BODY_BYTES"  # serve.max_body_mb, in bytes, to workers
MAX_BODY_MB = 16  # the default of serve.max_body_mb
MAX_CONNECTIONS = 64  # a worker's open connections (uvicorn answers 503 beyond): the bodies
# it holds at once are at most this many times serve.max_body_mb
HOSTS = "IDS_SERVE_MAX_HOSTS"  # score_max_hosts, to workers
def predictions(scorer: Scorer, flows: pd.DataFrame) -> bytes:
    """The JSON answer for `flows`; DataError (bad flows) becomes a 400."""
    try:
        scores = scorer.scores(flows)  # a grouped model: each host's flows of earlier requests
    except DataError as exc:
        raise BadRequest(" ".join(str(exc).split())) from exc
    labels = (scores >= scorer.threshold).astype(np.int64)
    # the text json.dumps writes for [{"score": s, "label": k}, ...] (repr of each finite
    # float), without a dict per flow: a quarter of the memory for a large request
    rows = ", ".join([f'{{"score": {s!r}, "label": {k}}}'
                      for s, k in zip(scores.tolist(), labels.tolist(), strict=True)])
    return f'{{"predictions": [{rows}]}}'.encode()


def _error(exc: BadRequest) -> tuple[int, bytes]:
    code = STATUS_CODES.get(exc.status, "BAD_REQUEST")
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

    limit = int(os.environ.get(MAX_BODY) or MAX_BODY_MB << 20)

    async def send_answer(send, status: int, body: bytes, close: bool = False) -> None:
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if close:  # the rest of the body is not read: the connection cannot carry another
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
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
        content_type = next((v.decode("latin-1") for k, v in scope["headers"]
                             if k == b"content-type"), "application/json")
        read = False
        try:
            body = await read_body(scope, receive, limit)
            read = True
            status, answer = 200, predictions(scorer, parse_flows(body, content_type))
        except BadRequest as exc:
            status, answer = _error(exc)
        except ConnectionAbortedError:
            return
        except Exception as exc:  # noqa: BLE001 - a bug: a JSON 500, the traceback in the log
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
            status, answer = _error(BadRequest(f"{type(exc).__name__} while scoring the "
                                               "request (a bug: the log has its traceback)", 500))
        await send_answer(send, status, answer, close=not read)

    return app


def check_port(host: str, port: int) -> None:
    """ConfigError in one line when uvicorn could not listen on host:port (another server
    there, a port below 1024 without the right, an address not of this machine): checked by
    binding it as uvicorn does (SO_REUSEADDR), then letting it go."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"serve.host={host}: not an address of this machine ({exc.strerror})"
                          ) from exc
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            raise ConfigError(
                f"serve.port={port} on {host} cannot be used ({exc.strerror}): "
                + ("another server listens there; stop it or choose another port "
                   "(serve.port=..., make serve SERVE_PORT=...)" if busy else
                   "choose another port or serve.host")) from exc


def sized(workers: int, threads: int, cores: int, stateful: bool) -> tuple[int, int]:
    """(workers, kernel threads each) of `serve.workers` / `serve.threads` (0: sized to the
    machine): one worker per core, but one for a model with host state (grouped windows, time
    gaps), which lives in a worker's memory: one worker sees every host's flows."""
    workers = workers or (1 if stateful else cores)
    return workers, threads or max(1, cores // workers)


def serve(cfg) -> None:
    """Resolve and download the model once, check it, then run uvicorn with `serve.workers`
    workers (0: one per core; one for a model with host state, whose state is its worker's
    memory), each with `serve.threads` kernel threads (0: cores / workers)."""
    import uvicorn

    s = cfg.serve
    if not 1 <= int(s.port) <= 65535:
        raise ConfigError(f"serve.port must be in [1, 65535], but got {s.port}")
    if int(s.workers) < 0 or int(s.threads) < 0:
        raise ConfigError(f"serve.workers and serve.threads must be >= 0 (0: sized to the "
                          f"machine), but got {s.workers} and {s.threads}")
    cores = os.cpu_count() or 1
    memo.from_config(cfg.score_memo_mb)  # a bad value fails here, not in each worker
    check_port(str(s.host), int(s.port))  # before the model is resolved, loaded and compiled
    uri = registry.default_model_uri(cfg)
    if registry.needs_store(uri):
        registry.connect(cfg.tracking.uri)
    ref = registry.resolve_model(uri)
    with tempfile.TemporaryDirectory(prefix="ids-serve-") as tmp:
        folder = registry.download_model(ref.pinned_uri, Path(tmp))
        scorer = Scorer.load(folder)  # a broken model stops here, not in each worker
        workers, threads = sized(int(s.workers), int(s.threads), cores, scorer.stateful)
        if scorer.stateful and workers > 1:
            print(f"warning: this model keeps state per host (data.window_by={scorer.window_by}"
                  f", data.time_gap={str(scorer.time_gap).lower()}); each of the {workers} "
                  "workers keeps its own, so a host's flows must reach the same worker (or "
                  "serve.workers=0: one worker)", file=sys.stderr, flush=True)
        window = scorer.window
        del scorer  # each worker loads its own
        os.environ.update({FOLDER: str(folder), THREADS: str(threads),
                           MEMO: str(int(cfg.score_memo_mb)),
                           MAX_BODY: str(int(s.max_body_mb) << 20),
                           HOSTS: str(int(cfg.score_max_hosts))})
        print(f"serving {ref.label} (window {window}) on http://{s.host}:{s.port}/invocations: "
              f"{workers} worker(s) x {threads} kernel thread(s); a worker takes connections "
              "once it has compiled its batch shapes", flush=True)
        uvicorn.run("ids.serving.http:create_app", factory=True, host=str(s.host),
                    port=int(s.port), workers=workers, lifespan="off", access_log=False,
                    log_level="warning", limit_concurrency=MAX_CONNECTIONS)
