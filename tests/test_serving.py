"""Issue 15: streaming scores (`ids.predict input=- output=-`) and `make serve` (ids' server for
MLflow's scoring protocol, `ids.serving.http`), both checked against `ids.predict` on the same flows with one tiny real model, logged
and registered as champion in a temporary store (the session's world, tests/world.py)."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, V1_SAMPLE, patience, run_cli, stop_group
from ids.data import synthetic
from ids.serving.files import predict_file
from ids.serving.stream import score_stream
from ids.tools.servers import free_port
from ids.tracking.registry import load_scorer, resolve_model

NAME = "ids-cnn-bilstm"
CHAMPION = f"models:/{NAME}@champion"
SERVE_WAIT_SECONDS = patience(240)  # import MindSpore + MLflow, load the model, on 2 busy cores


@pytest.fixture(scope="module")
def champion(world, tmp_path_factory):
    """The session's champion (tests/world.py: trained and logged by a sweep, promoted in a
    temporary store); 1,500 synthetic flows it never saw, and their whole-file `ids.predict`
    output (the reference)."""
    tmp = tmp_path_factory.mktemp("serving")
    mlflow.set_tracking_uri(world.uri)
    scorer = load_scorer(resolve_model(CHAMPION))
    flows = synthetic.generate(1500, 11, dict(world.cfg.data.class_mix))
    path = tmp / "flows.csv"
    flows.to_csv(path, index=False)
    assert predict_file(None, path, tmp / "whole.csv", scorer=scorer) == 1500
    return {"tmp": tmp, "uri": world.uri, "scorer": scorer, "path": path,
            "whole": tmp / "whole.csv", "flows": flows}


def _pieces(data: bytes, n: int) -> list[bytes]:
    """`n` pieces cut at arbitrary byte offsets (mid-line, mid-number)."""
    cuts = sorted(np.random.default_rng(3).choice(np.arange(1, len(data)), n - 1, replace=False))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_stream_in_pieces_equals_whole_file_and_alerts_only(champion):
    """In process, through an OS pipe: 7 pieces cut mid-line give the whole-file output."""
    data = champion["path"].read_bytes()
    for alerts_only in (False, True):
        r, w = os.pipe()
        out_path = champion["tmp"] / f"stream-{alerts_only}.csv"

        def writer(w=w) -> None:  # pieces with pauses, so the reader sees several reads
            for piece in _pieces(data, 7):
                os.write(w, piece)
                time.sleep(0.05)
            os.close(w)

        thread = threading.Thread(target=writer)
        thread.start()
        with os.fdopen(r, "rb") as src, open(out_path, "w", newline="") as sink:
            n, alerts = score_stream(champion["scorer"], src, sink, alerts_only=alerts_only)
        thread.join()
        ref = pd.read_csv(champion["whole"])
        assert n == 1500 and alerts == int(ref["label"].sum()) > 0
        if not alerts_only:  # scores may differ in the last bit (test_scoring_agreement.py)
            pd.testing.assert_frame_equal(pd.read_csv(out_path), ref, check_exact=False,
                                          rtol=0, atol=1e-6)
        else:
            got = pd.read_csv(out_path)
            expected = ref[ref["label"] == 1].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, expected)
            assert 0 < len(got) < 1500 or ref["label"].all()


def _read_lines(proc: subprocess.Popen, n: int, timeout: float = patience(300)) -> list[bytes]:
    """n lines from the subprocess's stdout; fails (instead of hanging) if they never come."""
    lines, deadline = [], time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = b""
    while len(lines) < n:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            pytest.fail(f"only {len(lines)} of {n} scored lines arrived while the input stayed "
                        "open: the stream does not flush per batch")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            pytest.fail(f"stdout closed after {len(lines)} lines: {proc.stderr.read()[-2000:]}")
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [d + b"\n" for d in done]
    assert buf == b"" and len(lines) == n, "more output than flows sent so far"
    return lines


@pytest.mark.slow  # a process through a pipe; in process: the test above
def test_predict_cli_streams_through_a_pipe(champion):
    """`python -m ids.predict input=- output=-` fed in pieces: the scores of the first flows
    arrive while standard input is still open, and the whole output equals ids.predict's."""
    data, whole = champion["path"].read_bytes(), champion["whole"].read_bytes()
    lines = data.split(b"\n")
    part1 = b"\n".join(lines[:101]) + b"\n" + lines[101][:10]  # header, flows 0-99, a fragment
    rest = data[len(part1):]
    cmd = [sys.executable, "-m", "ids.predict", f"model_uri={CHAMPION}",
           f"tracking.uri={champion['uri']}", "input=-", "output=-",
           f"hydra.run.dir={champion['tmp']}/hydra"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(part1)
        proc.stdin.flush()
        got = _read_lines(proc, 101)  # header + 100 flows, input still open
        expected = whole.split(b"\n")
        assert b"".join(got) == b"\n".join(expected[:101]) + b"\n"
        for piece in _pieces(rest, 5):
            proc.stdin.write(piece)
            proc.stdin.flush()
        proc.stdin.close()
        tail = proc.stdout.read()
        assert proc.wait(timeout=patience(300)) == 0, proc.stderr.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = pd.read_csv(io.BytesIO(b"".join(got) + tail))  # last bits: test_scoring_agreement.py
    pd.testing.assert_frame_equal(out, pd.read_csv(champion["whole"]), check_exact=False,
                                  rtol=0, atol=1e-6)
    assert b"scored 1,500 flows from standard input" in proc.stderr.read()


def test_stream_bad_input_and_alerts_only_on_a_file_exit_2(champion, monkeypatch, capsys):
    bad = champion["tmp"] / "bad.csv"
    champion["flows"].drop(columns=["TCP_FLAGS"]).iloc[:20].to_csv(bad, index=False)
    base = [f"model_uri={CHAMPION}", f"tracking.uri={champion['uri']}",
            f"hydra.run.dir={champion['tmp']}/hydra"]
    with open(bad) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        with pytest.raises(SystemExit) as exit_info:
            run_cli(monkeypatch, "ids.predict", *base, "input=-", "output=-")
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: standard input, flows 0-19") and "TCP_FLAGS" in err
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, "ids.predict", *base, f"input={champion['path']}",
                f"output={champion['tmp']}/x.csv", "alerts_only=true")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: alerts_only=true applies to streaming")


def _post(port: int, body: bytes, content_type: str = "application/json",
          timeout: float = 120) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                 headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def served(champion):
    """`make serve` on a free port against the temporary store; stopped in teardown."""
    if not V1_SAMPLE.exists():
        pytest.skip(f"{V1_SAMPLE} is absent: the real NF-BoT-IoT samples live in ../shared/data/")
    venv = Path(sys.prefix)
    port = free_port()
    log_path = champion["tmp"] / "serve.log"
    log = log_path.open("w")
    # -o: take the venv stamp as up to date (never reinstall packages from a test). PATH is
    # stripped of the venv on purpose: `make serve` must find its programs itself.
    env = {**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}",
           "-o", f"{venv}/.installed-stamp", "serve", f"TRACKING_URI={champion['uri']}",
           f"SERVE_PORT={port}", f"ARGS=hydra.run.dir={champion['tmp']}/serve-hydra"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)

    def logged() -> str:
        return log_path.read_text()[-3000:]

    try:
        deadline = time.monotonic() + SERVE_WAIT_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`make serve` exited with {proc.returncode}:\n{logged()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no scoring server on 127.0.0.1:{port} after "
                            f"{SERVE_WAIT_SECONDS:.0f} s:\n{logged()}")
            time.sleep(1)
        yield {"port": port, "log": logged}
    finally:
        stop_group(proc, timeout=20)  # the whole group: make, ids.serve and its workers
        log.close()


@pytest.mark.slow  # starts a server (30 s to minutes on 2 busy cores)
def test_make_serve_scores_real_flows_like_ids_predict(champion, served):
    """Real NF-BoT-IoT flows posted in the published column layout (JSON and CSV) score as
    `ids.predict` scores the same flows in a file; a malformed body gets a 4xx and the server
    keeps answering."""
    port, tmp = served["port"], champion["tmp"]
    flows = pd.read_csv(V1_SAMPLE, nrows=300)
    path = tmp / "real.csv"
    flows.to_csv(path, index=False)
    assert predict_file(None, path, tmp / "real-scored.csv", scorer=champion["scorer"]) == 300
    expected = pd.read_csv(tmp / "real-scored.csv")

    body = json.dumps({"dataframe_split": json.loads(flows.to_json(orient="split",
                                                                   index=False))}).encode()
    status, raw = _post(port, body)
    assert status == 200, raw[:2000]
    got = pd.DataFrame(json.loads(raw)["predictions"])
    assert list(got.columns) == ["score", "label"] and len(got) == 300
    np.testing.assert_allclose(got["score"], expected["score"], rtol=0, atol=1e-6)
    assert (got["label"] == expected["label"]).all()

    status, raw = _post(port, path.read_bytes(), "text/csv")  # the file as it is
    assert status == 200, raw[:2000]
    np.testing.assert_allclose(pd.DataFrame(json.loads(raw)["predictions"])["score"],
                               expected["score"], rtol=0, atol=1e-6)

    # Malformed: not JSON, and flows without a required column.
    status, raw = _post(port, b'{"dataframe_split": {"columns": ["IN_BYTES"')
    assert 400 <= status < 500, (status, raw[:500])
    missing = json.dumps({"dataframe_records": json.loads(
        flows.drop(columns=["TCP_FLAGS"]).iloc[:5].to_json(orient="records"))}).encode()
    status, raw = _post(port, missing)
    assert 400 <= status < 500, (status, raw[:500])
    assert b"TCP_FLAGS" in raw
    # Still answering, with the same scores.
    status, raw = _post(port, body)
    assert status == 200
    np.testing.assert_allclose(pd.DataFrame(json.loads(raw)["predictions"])["score"],
                               expected["score"], rtol=0, atol=1e-6)
