"""Issue 40: the MLflow UI opens where ids' users work, on the experiment's runs table.

Experiments ids makes or reuses carry `mlflow.experimentKind` (model training); `make ui` prints
the address of the `ids` experiment's runs table; and a real browser (headless Chromium, driven
by selenium through Debian's chromedriver) opens that address on `make ui` serving a copy of the
session's world (a 3-trial sweep) and finds the sweep's parent run, then its trials unfolded.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, patience, stop_group
from ids.config import compose
from ids.tools.servers import free_port
from ids.tracking import store
from ids.tracking.ui import runs_url
from world import copy as copy_world
from world import mlflow_store, runs_of, tiny_overrides

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# As root on a closed network: no sandbox, no GPU, no calls home (they are refused, many at a time).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900"]
WAIT_SECONDS = patience(90)  # the UI's server and the page's first render, on 2 busy cores


def test_experiments_ids_makes_or_reuses_declare_model_training(tmp_path):
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    cfg = compose(tiny_overrides(tmp_path) + ["tracking.experiment=made"])
    made = MlflowClient(uri).get_experiment(store.configure(cfg.tracking))
    assert made.tags[store.KIND_TAG] == store.KIND == "custom_model_development"

    client = MlflowClient(uri)  # made before ids declared it; one whose kind a user chose
    old = client.create_experiment("old")
    chosen = client.create_experiment("chosen", tags={store.KIND_TAG: "forecasting"})
    for name in ("old", "chosen"):
        store.configure(compose(tiny_overrides(tmp_path) + [f"tracking.experiment={name}"]).tracking)
    assert client.get_experiment(old).tags[store.KIND_TAG] == store.KIND
    assert client.get_experiment(chosen).tags[store.KIND_TAG] == "forecasting"


def test_the_ui_address_is_the_runs_table_or_a_pointer_when_there_is_none(tmp_path):
    db = tmp_path / "mlruns" / "mlflow.db"
    url, what = runs_url(f"sqlite:///{db}", "ids", "http://127.0.0.1:5000")
    assert url == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert "no experiment 'ids'" in what
    assert not db.exists()  # printing an address creates no store

    uri = mlflow_store(db)
    exp_id = MlflowClient(uri).create_experiment("ids")
    url, what = runs_url(uri, "ids", "http://127.0.0.1:5000")
    assert url == (f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs"
                   "?workflowType=machine_learning")
    assert "sweep-<study>" in what
    assert MlflowClient(uri).get_experiment(exp_id).tags[store.KIND_TAG] == store.KIND


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@pytest.fixture(scope="module")
def ui(world, tmp_path_factory):
    """`make ui` on a copy of the world's store (the UI may write to it); yields its address."""
    here = copy_world(world, tmp_path_factory.mktemp("ui") / "world")
    port = free_port()
    log_path = here.tmp / "ui.log"
    # -o: take the venv stamp as up to date (never reinstall packages from a test).
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "-o", ".venv/.installed-stamp",
           "ui", f"TRACKING_URI={here.uri}", f"PORT={port}"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`make ui` did not serve 127.0.0.1:{port}:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"world": here, "port": port, "log": log_path.read_text()}
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} absent: apt-get install chromium chromium-driver "
                    "(.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_make_ui_prints_the_address_of_the_runs_table(ui):
    exp = MlflowClient(ui["world"].uri).get_experiment_by_name("ids")
    expected = (f"MLflow UI: http://127.0.0.1:{ui['port']}/#/experiments/{exp.experiment_id}"
                "/runs?workflowType=machine_learning")
    assert expected in ui["log"].splitlines()


@pytest.mark.slow
def test_the_runs_table_shows_the_sweep_and_unfolds_its_trials(ui, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    client, parents, trials = runs_of(ui["world"].cfg)
    (parent,) = [p.info.run_name for p in parents]
    trial_names = sorted(t.info.run_name for t in trials)
    assert parent == f"sweep-{ui['world'].cfg.sweep.study}" and len(trial_names) == 3
    runs = client.search_runs([parents[0].info.experiment_id])
    top = sorted(r.info.run_name for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent in top and not set(trial_names) & set(top)  # the promotion's evaluation too

    url = re.search(r"MLflow UI: (\S+)", ui["log"]).group(1)
    browser.get(url)
    wait = WebDriverWait(browser, WAIT_SECONDS)
    name_cell = ("//div[@role='gridcell'][.//*[normalize-space(text())='{}']]").format
    cell = wait.until(seen.visibility_of_element_located((By.XPATH, name_cell(parent))))
    shown = lambda: sorted(  # noqa: E731 - the run names the table shows now
        e.text for e in browser.find_elements(By.XPATH, "//div[@role='gridcell']//a/span"))
    assert shown() == top, "the trials are folded under their parent run at first"

    cell.find_element(By.XPATH, ".//button").click()  # the + beside the parent's name
    wait.until(lambda _: len(shown()) == len(top) + len(trial_names))
    assert shown() == sorted([*top, *trial_names])
    assert "Token Usage" not in browser.find_element(By.TAG_NAME, "body").text  # not GenAI

