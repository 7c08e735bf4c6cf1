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
JSON nested deeper than MAX_JSON_DEPTH levels, a malformed Content-Length, cells that are JSON
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
import io
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
from ids.tracking import registry
from ids.tracking.redact import redact

FOLDER, THREADS, MEMO = "IDS_SERVE_FOLDER", "IDS_SERVE_THREADS", "IDS_SERVE_MEMO_MB"  # to workers
MAX_BODY = "IDS_SERVE_MAX_BODY_BYTES"  # serve.max_body_mb, in bytes, to workers
MAX_BODY_MB = 16  # the default of serve.max_body_mb
MAX_CONNECTIONS = 64  # a worker's open connections (uvicorn answers 503 beyond): the bodies
# it holds at once are at most this many times serve.max_body_mb
HOSTS = "IDS_SERVE_MAX_HOSTS"  # score_max_hosts, to workers
JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# MLflow 1.x clients name the body's layout in the content type instead of a JSON key
FORMATS = {"pandas-records": "dataframe_records", "pandas-split": "dataframe_split"}
MAX_JSON_DEPTH = 64  # the protocol needs 4 ({"dataframe_split": {"data": [[...]]}})
_STATUS_CODES = {400: "BAD_REQUEST", 413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
                 500: "INTERNAL_ERROR"}


class BadRequest(ValueError):
    """A request that cannot be scored: HTTP `status` with the one-line reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def content_type_parts(content_type: str) -> tuple[str, dict[str, str]]:
    """('application/json', {'charset': 'utf-8', 'format': 'pandas-records'}): the media type
    and every parameter of a Content-Type header (names lower-cased, quotes removed)."""
    mime, *pairs = (content_type or "application/json").split(";")
    params = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name.strip():
            params[name.strip().lower()] = value.strip().strip('"')
    return mime.strip().lower(), params


_NOT_STRUCTURE = bytes(c for c in range(256) if chr(c) not in '"[]{}')


def json_depth(body: bytes | bytearray, limit: int = MAX_JSON_DEPTH, block: int = 1 << 20) -> int:
    """How deep the arrays and objects of the JSON `body` nest, without parsing it (Python's
    parser recurses once a level: deep nesting was a RecursionError): escaped backslashes and
    quotes are dropped, then everything but quotes and brackets (C loops over the bytes), and
    the brackets outside strings are counted in blocks of `block` with numpy, stopping past
    `limit`. A 30 MB body of flows takes about as long as parsing it."""
    kept = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    depth = deepest = 0
    inside = 0  # 1: the last block ended inside a string
    for start in range(0, len(kept), block):
        b = np.frombuffer(kept, np.uint8, count=min(block, len(kept) - start), offset=start)
        quotes = np.cumsum(b == ord('"'))
        outside = (quotes + inside) % 2 == 0
        delta = (((b == ord("[")) | (b == ord("{"))) & outside).astype(np.int64)
        delta -= ((b == ord("]")) | (b == ord("}"))) & outside
        levels = np.cumsum(delta)
        deepest = max(deepest, depth + int(levels.max()))
        depth += int(levels[-1])
        inside = (int(quotes[-1]) + inside) % 2
        if deepest > limit:
            break
    return deepest


def parse_flows(body: bytes | bytearray, content_type: str) -> pd.DataFrame:
    """The flows of a request body, as MLflow's scoring server would read them (and as MLflow
    1.x clients send them: `format=pandas-records` or `pandas-split` in the content type)."""
    mime, params = content_type_parts(content_type)
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise BadRequest(f"charset {charset!r}: send UTF-8", 415)
    layout = params.get("format")
    if layout is not None and layout not in FORMATS:
        raise BadRequest(f"format={layout!r} in the content type: send the body as JSON with one "
                         f"of {list(JSON_KEYS)} (or format={' or '.join(FORMATS)})", 415)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 text ({exc})") from exc
    if mime == "text/csv":
        try:
            return pd.read_csv(io.StringIO(text), low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            why = " ".join(str(exc).split())[:300]
            raise BadRequest(f"the body is not CSV with a header line ({why})") from exc
    if mime != "application/json":
        raise BadRequest(f"Content-Type {mime!r}: send application/json or text/csv", 415)
    if json_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep (MLflow's "
                         f"scoring protocol needs 4); send "
                         '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}')
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON ({exc}); send "
                         '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}') from exc
    keys = [k for k in JSON_KEYS if isinstance(doc, dict) and k in doc]
    if not keys and layout is not None:
        keys, doc = [FORMATS[layout]], {FORMATS[layout]: doc}
    if len(keys) != 1:
        has = sorted(doc)[:6] if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise BadRequest(f"the JSON body must hold exactly one of {list(JSON_KEYS)} (MLflow's "
                         f"scoring protocol), but it has {has}")
    data = doc[keys[0]]
    try:
        if keys[0] == "dataframe_split":
            flows = pd.DataFrame(data["data"], columns=data["columns"])
        else:
            flows = pd.DataFrame(data)  # records: a list of {column: value}; inputs: columns
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRequest(f"{keys[0]} does not describe a table ({type(exc).__name__}: "
                         f"{exc}); dataframe_split needs 'columns' and 'data'") from exc
    _scalar_cells(flows)
    return flows


def _scalar_cells(flows: pd.DataFrame) -> None:
    """BadRequest naming the first cell that is a JSON list or object (a table's cells are
    numbers or strings); only columns of Python objects can hold one."""
    for name in flows.columns[[dt == np.dtype(object) for dt in flows.dtypes]]:
        column = flows[name]
        nested = column.map(lambda v: isinstance(v, (list, dict))).to_numpy(bool)
        if nested.any():
            row = int(nested.argmax())
            kind = "list" if isinstance(column.iloc[row], list) else "object"
            raise BadRequest(f"column {str(name)[:100]!r}, row {row} (0-based) holds a JSON "
                             f"{kind}; every cell must be a number or a string")


async def read_body(scope, receive, limit: int) -> bytearray:
    """The request's body, at most `limit` bytes: 413 when its Content-Length says more or,
    for a chunked body, as soon as what arrived passes it (what is held never exceeds it)."""
    lengths = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
    if lengths:
        try:
            (declared,) = {int(v) for v in lengths}
            if declared < 0:
                raise ValueError
        except ValueError:
            raise BadRequest("the Content-Length header is not one whole number of bytes") from None
        if declared > limit:
            raise BadRequest(_too_large(limit, f"Content-Length says {declared:,} bytes"), 413)
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("the client went away")
        chunk = message.get("body", b"")
        if len(body) + len(chunk) > limit:
            raise BadRequest(_too_large(limit, "the body is longer"), 413)
        body += chunk
        more = message.get("more_body", False)
    return body  # not copied


def _too_large(limit: int, what: str) -> str:
    return (f"a request may hold at most {limit / 2**20:g} MiB (serve.max_body_mb), and {what}; "
            "send the flows in smaller requests")


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
    code = _STATUS_CODES.get(exc.status, "BAD_REQUEST")
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
        window, stateful = scorer.window, scorer.stateful
        state = f"data.window_by={scorer.window_by}, data.time_gap={str(scorer.time_gap).lower()}"
        del scorer
        workers, threads = sized(int(s.workers), int(s.threads), cores, stateful)
        if stateful and workers > 1:
            print(f"warning: this model keeps state per host ({state}); each of the {workers} "
                  "workers keeps its own, so a host's flows must reach the same worker (or "
                  "serve.workers=0: one worker)", file=sys.stderr, flush=True)
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
