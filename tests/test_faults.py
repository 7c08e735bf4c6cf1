"""Fault injection: a full disk, a read-only disk and signals at random points.

The disks are real: a small tmpfs mounted in a private mount namespace (`unshare -m`, or
`unshare -rm` as a normal user) that only the command under test sees and that vanishes with
it; the real disk is never filled. Tests skip, saying why, where namespaces are not allowed.
Signals are real too: SIGTERM, SIGINT and SIGHUP sent to this process at random moments
around a real MLflow run (hypothesis draws the moments).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from conftest import ROOT, patience, tiny_overrides
from ids.data import synthetic

PY = f'"{sys.executable}" -m'


def _namespace() -> list[str]:
    """The `unshare` prefix that gives a private mount namespace here, or skip."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: no private tmpfs for fault tests")
    for prefix in (["unshare", "-m", "--propagation", "private"],
                   ["unshare", "-rm", "--propagation", "private"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip(f"cannot mount a private tmpfs here ({probe.stderr.decode()[-200:]})")


def on_small_disk(tmp_path: Path, size: str, script: str) -> dict[str, str]:
    """Run the sh `script` where $DISK is a fresh tmpfs of `size` and $OUT a folder on the real
    disk for what the script reports; returns {file name: text} of $OUT afterwards."""
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISK": str(disk), "OUT": str(out)}
    cmd = [*_namespace(), "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$DISK" && {script}']
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=patience(300))
    assert done.returncode == 0, done.stderr[-3000:]
    return {p.name: p.read_text(errors="replace") for p in out.iterdir() if p.is_file()}


def _assert_one_line(err: str, *fragments: str) -> str:
    """One `error:` line, besides MindSpore's own log lines (`[WARNING] ME(...)`), which every
    command that builds a network prints."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[WARNING] ME(")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def many_flows(tmp_path) -> Path:
    path = tmp_path / "flows.csv"  # ~300 KB of scores: more than the 64 KB disk holds
    synthetic.generate(5000, 4, {"Benign": 1.0, "DoS": 3.0}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mode", ["file", pytest.param("stream", marks=pytest.mark.slow)])
def test_a_full_disk_is_one_line_and_the_existing_output_survives(mode, tiny_model, tmp_path,
                                                                  many_flows):
    src = f'input={many_flows}' if mode == "file" else f'input=- < "{many_flows}"'
    report = on_small_disk(tmp_path, "64k", f"""
        printf 'keep me\\n' > "$DISK/alerts.csv"
        {PY} ids.predict model_uri={tiny_model[0]} hydra.run.dir="$OUT/hydra" \\
            output="$DISK/alerts.csv" overwrite=true {src} 2> "$OUT/err"
        echo $? > "$OUT/rc"; ls -A "$DISK" > "$OUT/ls"; cp "$DISK/alerts.csv" "$OUT/after"
    """)
    assert report["rc"].strip() == "2", report["err"][-3000:]
    _assert_one_line(report["err"], "alerts.csv could not be written", "ENOSPC", "disk is full")
    assert report["after"] == "keep me\n" and report["ls"].split() == ["alerts.csv"]


def test_a_read_only_output_folder_is_one_line(tiny_model, tmp_path, many_flows):
    report = on_small_disk(tmp_path, "64k", f"""
        printf 'keep me\\n' > "$DISK/alerts.csv"; mount -o remount,ro "$DISK"
        {PY} ids.predict model_uri={tiny_model[0]} hydra.run.dir="$OUT/hydra" \\
            input={many_flows} output="$DISK/alerts.csv" overwrite=true 2> "$OUT/err"
        echo $? > "$OUT/rc"; cp "$DISK/alerts.csv" "$OUT/after"
    """)
    assert report["rc"].strip() == "2"
    _assert_one_line(report["err"], "cannot be written", "EROFS", "read-only")
    assert report["after"] == "keep me\n"


@pytest.mark.slow  # a training in its own process and mount namespace: ~13 s
def test_a_full_disk_under_the_mlflow_store_never_leaves_a_run_running(tmp_path):
    """The store and its artifacts on a disk that fills up while the run logs its model: the
    run ends FAILED, or the one line says the store itself could not be written."""
    args = " ".join(o for o in tiny_overrides(tmp_path) if not o.startswith("tracking.uri="))
    report = on_small_disk(tmp_path, "1300k", f"""
        {PY} ids.run {args} trainer.epochs=1 trainer.baselines=false tracking.log_plots=false \\
            quiet=true tracking.uri=sqlite:///$DISK/mlruns/mlflow.db \\
            hydra.run.dir="$OUT/hydra" > /dev/null 2> "$OUT/err"
        echo $? > "$OUT/rc"; cp "$DISK/mlruns/mlflow.db" "$OUT/mlflow.db" 2>/dev/null || true
    """)
    assert report["rc"].strip() == "2", report["err"][-3000:]
    line = _assert_one_line(report["err"])
    assert "ENOSPC" in line or "disk is full" in line or "database or disk is full" in line, line
    client = MlflowClient(f"sqlite:///{tmp_path}/out/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    if "could not be marked FAILED" in line:  # the store could not take the end: said so, truly
        assert [(r.info.run_id, r.info.status) for r in runs] == [
            (line.split("MLflow run ")[1].split()[0], "RUNNING")]
    else:
        assert [r.info.status for r in runs] in ([], ["FAILED"]), line


# --- signals at random points --------------------------------------------------------------------

SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


@pytest.mark.parametrize("examples", [25, pytest.param(100, marks=pytest.mark.slow)])
def test_a_signal_at_a_random_point_never_leaves_a_run_running(examples, tmp_path):
    import mlflow

    from ids.tracking import signals, store

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    exp = store.configure(type("T", (), {"uri": uri, "experiment": "signals"}))
    client = MlflowClient(uri)
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    signals.end_runs_killed_on_sigterm()
    stopped: list[int] = []

    @settings(max_examples=examples, deadline=None, database=None,  # no explain phase: its
              suppress_health_check=list(HealthCheck),  # tracer would swallow the signals
              phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
    @given(delay=st.floats(0, 0.25), sig=st.sampled_from(SIGNALS), work=st.floats(0, 0.1))
    def one(delay: float, sig: int, work: float) -> None:
        fired = threading.Event()
        timer = threading.Timer(delay, lambda: (os.kill(os.getpid(), sig), fired.set()))
        try:
            timer.start()
            with store.start_run(exp, run_name="signalled"):
                mlflow.log_param("work", work)
                time.sleep(work)
                mlflow.log_metric("done", 1)
            fired.wait(10)
            time.sleep(0.05)  # the handler runs here at the latest
            stopped.append(0)
        except (SystemExit, KeyboardInterrupt):
            stopped.append(1)
            fired.wait(10)
        finally:
            timer.cancel()
        assert mlflow.active_run() is None
        running = [r for r in client.search_runs([exp]) if r.info.status == "RUNNING"]
        assert running == []

    try:
        one()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert sum(stopped) > 0  # some signals did stop runs
    statuses = {r.info.status for r in client.search_runs([exp], max_results=5000)}
    assert statuses <= {"FINISHED", "KILLED"}, statuses

