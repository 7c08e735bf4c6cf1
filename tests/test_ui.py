"""Issue 5: `make ui` serves the MLflow UI for the project's store on 127.0.0.1, on a port of
your choosing. Runs the Makefile recipe itself against a real SQLite store holding a run and
asks the server's REST API for that run. The server is always stopped in teardown."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, patience, stop_group, tiny_overrides
from ids.config import compose
from ids.tools.servers import free_port
from ids.tracking import store as tracking_store
from world import mlflow_store

pytestmark = pytest.mark.slow  # starts a server (the project's `slow` marker lists servers)

MLFLOW = ROOT / ".venv" / "bin" / "mlflow"
WAIT_SECONDS = patience(90)  # `mlflow ui` defaults to 4 workers: 30-80 s to answer on 2 busy cores


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store written by ids.tracking (as `ids.run` does) with one finished run in it."""
    tmp = tmp_path_factory.mktemp("ui")
    mlflow_store(tmp / "mlruns" / "mlflow.db")
    cfg = compose(tiny_overrides(tmp) + ["tracking.experiment=ui-test"])
    exp_id = tracking_store.configure(cfg.tracking)
    with tracking_store.start_run(exp_id, "ui-run") as run:
        tracking_store.log_config(cfg)
        tracking_store.log_metrics({"val/f1": 0.5}, step=1)
    return {"uri": str(cfg.tracking.uri), "experiment_id": exp_id, "run_id": run.info.run_id,
            "tmp": tmp}


def _api(port: int, path: str, body: dict | None = None, timeout: float = 10) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}", data=data,
                                 headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(store):
    """`make ui TRACKING_URI=... PORT=...`; yields the port once the API answers."""
    if not MLFLOW.exists():
        pytest.skip(f"{MLFLOW} is absent: build the venv with `make venv`")
    port = free_port()
    log = (store["tmp"] / "ui.log").open("w")
    # -o: take the venv stamp as up to date (never reinstall packages from a test).
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "-o", ".venv/.installed-stamp",
           "ui", f"TRACKING_URI={store['uri']}", f"PORT={port}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:  # the whole group: make, mlflow ui and its server workers
        stop_group(proc)
        log.close()

    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`make ui` exited with {proc.returncode}:\n"
                            f"{(store['tmp'] / 'ui.log').read_text()[-3000:]}")
            try:
                _api(port, "experiments/search", {"max_results": 10}, timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"no MLflow UI on 127.0.0.1:{port} after {WAIT_SECONDS:.0f} s:\n"
                                f"{(store['tmp'] / 'ui.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"port": port, "log": store["tmp"] / "ui.log", "cmd": cmd}
    finally:
        stop()


def test_make_ui_serves_the_store_with_the_run(store, server):
    port = server["port"]
    exp = _api(port, "experiments/get-by-name?experiment_name=ui-test")["experiment"]
    assert exp["experiment_id"] == store["experiment_id"]
    runs = _api(port, "runs/search", {"experiment_ids": [store["experiment_id"]]})["runs"]
    assert [r["info"]["run_id"] for r in runs] == [store["run_id"]]
    assert runs[0]["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
    assert params["model.kernel_size"] == "3"


def test_make_ui_serves_the_web_page(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server['port']}/", timeout=10) as resp:
        assert resp.status == 200
        assert b"<html" in resp.read(5000).lower()


def test_make_ui_listens_on_loopback_only(server):
    """HOST defaults to 127.0.0.1: the UI is not reachable on the machine's other addresses."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:  # the address of the default route's interface (no packet is sent)
            probe.connect(("10.255.255.255", 1))
            outside = probe.getsockname()[0]
        except OSError:
            outside = "127.0.0.1"
    if outside.startswith("127."):
        pytest.skip("this host has no non-loopback IPv4 address to try")
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((outside, server["port"])) != 0, outside
