"""Load test of a scoring server (`make serve`): requests/s, p50/p95/p99 latency and errors.

    python -m ids.tools.loadtest --url http://127.0.0.1:5001 \
        --flows ../shared/data/nf-bot-iot-sample.csv.gz --sizes 1,100 --clients 1,4,16 --seconds 10

Each of `--clients` concurrent clients keeps one HTTP/1.1 connection open and sends
`/invocations` requests back to back (the next one when the answer is in: a closed loop, as
locust or wrk do), each a JSON `dataframe_split` body of `size` consecutive real flows, cycling
through the file; it stops after `--seconds`. An error is an answer other than 200, a broken
connection or no answer within `--timeout`. A plain asyncio client with no dependency, light on
the CPU it shares with the server on loopback; the bench's `serve` section runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from ids import outputs

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose Makefile has `serve`


@contextlib.contextmanager
def make_serve(model: str, port: int, log_path: Path, tracking_uri: str | None = None,
               workers: int | None = None, wait_seconds: float = 300,
               overrides: tuple[str, ...] = ()) -> Iterator[str]:
    """`make serve MODEL=model` (with Hydra `overrides`) on 127.0.0.1:port until /ping answers
    and every worker has compiled its batch shapes; yields its URL and stops the whole process
    group (make, the command, uvicorn's workers) on exit."""
    venv = Path(sys.prefix)
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}", "-o",
           f"{venv}/.installed-stamp", "serve", f"MODEL={model}", f"SERVE_PORT={int(port)}",
           f"ARGS=hydra.run.dir={Path(log_path).parent / 'serve-hydra'} "  # not outputs/ here
           + " ".join(overrides)]
    cmd += [f"TRACKING_URI={tracking_uri}"] if tracking_uri else []
    cmd += [f"SERVE_WORKERS={int(workers)}"] if workers else []
    url = f"http://127.0.0.1:{int(port)}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + wait_seconds
            while not (_pings(url) and _all_ready(Path(log_path).read_text())):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`make serve` did not come up on {url} (exit "
                                       f"{proc.poll()}): {Path(log_path).read_text()[-2000:]}")
                time.sleep(0.5)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # workers that outlived make
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _all_ready(log: str) -> bool:
    """The command says how many workers it starts; each says `ready` once compiled."""
    m = re.search(r"(\d+) worker\(s\)", log)
    return m is not None and log.count(" ready (") >= int(m.group(1))


def _pings(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def request_bodies(flows: pd.DataFrame, size: int, count: int = 64) -> list[bytes]:
    """`count` JSON bodies of `size` consecutive flows each, from successive parts of `flows`."""
    out = []
    for k in range(count):
        start = (k * size) % max(1, len(flows) - size + 1)
        part = flows.iloc[start : start + size]
        split = json.loads(part.to_json(orient="split", index=False))
        out.append(json.dumps({"dataframe_split": split}).encode())
    return out


def _http(host: str, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                   if k.strip().lower() == "content-length"), 0)
    return status, await reader.readexactly(length)


async def _client(host: str, port: int, path: str, bodies: list[bytes], first: int,
                  deadline: float, timeout: float, latencies: list[float],
                  errors: list[str]) -> None:
    conn = None
    k = first
    while time.perf_counter() < deadline:
        body = bodies[k % len(bodies)]
        k += 1
        started = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            reader, writer = conn
            writer.write(_http(f"{host}:{port}", path, body))
            status, answer = await asyncio.wait_for(_answer(reader), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if conn is not None:
                conn[1].close()
            conn = None
            continue
        if status != 200:
            errors.append(f"HTTP {status}: {answer[:200]!r}")
            continue
        latencies.append(time.perf_counter() - started)
    if conn is not None:
        conn[1].close()


def run_load(url: str, bodies: list[bytes], clients: int, seconds: float,
             timeout: float = 10.0) -> dict:
    """`clients` closed-loop clients for `seconds`: requests/s, latency percentiles (ms) and
    errors (with the first few messages)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
    path = (parts.path.rstrip("/") or "") + "/invocations"
    latencies: list[float] = []
    errors: list[str] = []

    async def go() -> float:
        started = time.perf_counter()
        deadline = started + float(seconds)
        await asyncio.gather(*(_client(host, port, path, bodies, i * 7, deadline, timeout,
                                       latencies, errors) for i in range(int(clients))))
        return time.perf_counter() - started

    wall = asyncio.run(go())
    ms = np.asarray(latencies) * 1e3
    pct = {f"p{q}_ms": float(np.percentile(ms, q)) if len(ms) else float("nan")
           for q in (50, 95, 99)}
    return {"clients": int(clients), "seconds": wall, "requests": len(latencies),
            "errors": len(errors), "rps": len(latencies) / wall, **pct,
            "max_ms": float(ms.max()) if len(ms) else float("nan"), "first_errors": errors[:3]}


def report_line(size: int, r: dict) -> str:
    return (f"{size:>4} flows x {r['clients']:>2} clients: {r['rps']:7.1f} requests/s, p50 "
            f"{r['p50_ms']:7.1f} ms, p95 {r['p95_ms']:7.1f} ms, p99 {r['p99_ms']:7.1f} ms, "
            f"errors {r['errors']} of {r['requests'] + r['errors']}"
            + (f" (first: {r['first_errors'][0]})" if r["first_errors"] else ""))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ids.tools.loadtest", description=__doc__.split(
        "\n")[0])
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:5001")
    p.add_argument("--flows", required=True, help="a NetFlow CSV whose flows make the bodies")
    p.add_argument("--sizes", default="1,100", help="flows per request (comma-separated)")
    p.add_argument("--clients", default="1,4,16", help="concurrent clients (comma-separated)")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each run")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request fails")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.json:  # before any load: a FIFO, a folder or a missing folder is refused now
        outputs.check(args.json, overwrite=True, key="--json")
    flows = pd.read_csv(args.flows, nrows=20_000)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        bodies = request_bodies(flows, size)
        for clients in (int(c) for c in args.clients.split(",")):
            r = run_load(args.url, bodies, clients, args.seconds, args.timeout)
            results.append({"size": size, **r})
            print(report_line(size, r), flush=True)
    if args.json:
        outputs.write_text(args.json, json.dumps(results, indent=2), key="--json")


if __name__ == "__main__":
    main()
