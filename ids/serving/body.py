"""Reading a request to `POST /invocations`: the body within its size limit, its content type,
and the flows in it, as MLflow's scoring server reads them (JSON with `dataframe_split`,
`dataframe_records`, `instances` or `inputs`, MLflow 1.x's `format=` content types, or CSV).
What cannot be read is a `BadRequest`: its HTTP status and the one-line reason
(`ids.serving.http` answers it as JSON).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# MLflow 1.x clients name the body's layout in the content type instead of a JSON key
FORMATS = {"pandas-records": "dataframe_records", "pandas-split": "dataframe_split"}
MAX_JSON_DEPTH = 64  # the protocol needs 4 ({"dataframe_split": {"data": [[...]]}})
STATUS_CODES = {400: "BAD_REQUEST", 413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
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
