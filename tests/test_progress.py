"""Issue 15: live progress on a terminal, one line per epoch elsewhere, nothing when quiet."""

from __future__ import annotations

import io
import logging
import re

import pytest

from ids import progress
from ids.data.prepare import prepare
from ids.experiment.train import train
from ids.model.fit import fit
from ids.model.runtime import setup_runtime
from ids.tuning.sweep import sweep
from world import sweep_cfg


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _not_quiet():
    progress.configure(False)
    yield
    progress.configure(False)


def test_terminal_shows_epoch_bar_batch_bar_and_epoch_lines(tiny_cfg, monkeypatch):
    """A real fit drives the bars: the epoch bar with loss / metric / threshold, an inner bar
    over batches (a 'long' epoch here: BATCH_BAR_MIN lowered), and one line per epoch."""
    monkeypatch.setattr(progress, "BATCH_BAR_MIN", 2)
    cfg = tiny_cfg("trainer.patience=0", "data.n_flows=2000")
    prepared = prepare(cfg.data)
    setup_runtime(cfg.trainer)
    term = Terminal()
    batches: list[tuple[int, int]] = []

    def on_batch(done: int, total: int) -> None:
        batches.append((done, total))
        bar.on_batch(done, total)

    with progress.TrainingProgress(2, "mcc", stream=term) as bar:
        result = fit(cfg, prepared, on_epoch=bar.on_epoch, on_batch=on_batch)
    out = term.getvalue()
    n_batches = len(prepared.train.y) // 128
    assert batches == [(b, n_batches) for b in range(1, n_batches + 1)] * 2
    assert "training: 100%" in out and "2/2" in out  # the epoch bar ran to the end
    assert "batches" in out and "loss " in out and "mcc " in out and "thr " in out
    lines = [ln for ln in out.replace("\r", "\n").splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"]
    first = result.history[0]
    assert f"train loss {first['train/loss']:.4f}" in lines[0]
    assert f"val mcc {first['val/mcc']:.4f}" in lines[0]
    assert f"threshold {first['val/threshold']:.4f}" in lines[0]
    assert lines[0].endswith("*")  # the first epoch is the best so far


def test_off_terminal_one_line_per_epoch_and_quiet_prints_nothing(tiny_cfg, capsys):
    """`ids.run`'s training as CI sees it (stderr not a terminal): exactly one line per epoch
    and no bar; `quiet=true`: nothing at all."""
    cfg = tiny_cfg("trainer.epochs=3", "trainer.patience=0", "tracking.enabled=false",
                   "trainer.baselines=false", "data.n_flows=2000")
    summary = train(cfg)
    err = capsys.readouterr().err
    ours = [ln for ln in err.splitlines() if ln.startswith(("epoch ", "training", "["))]
    assert [ln.split()[1] for ln in ours] == ["1/3", "2/3", "3/3"], err[-2000:]
    assert "\r" not in err and "%|" not in err  # no bar drawn into a log
    assert summary["epochs_run"] == 3

    # quiet=true (the config key, as the sweep's trials set it): nothing, terminal or not.
    for stream in (Terminal(), io.StringIO()):
        with progress.TrainingProgress(1, "mcc", stream=stream, quiet=True) as bar:
            bar.on_batch(1, 100)
            bar.on_epoch(1, {"train/loss": 0.5, "val/mcc": 0.1, "val/threshold": 0.5})
        assert stream.getvalue() == ""


def test_steps_and_counters_only_on_a_terminal():
    term, log = Terminal(), io.StringIO()
    progress.step("loading the model", stream=term)
    progress.step("loading the model", stream=log)
    assert "loading the model ..." in term.getvalue() and log.getvalue() == ""
    frames = [list(range(3)), list(range(4))]
    assert list(progress.rows(iter(frames), "scoring", stream=term)) == frames
    assert "7" in term.getvalue().split("scoring")[-1]  # 7 flows counted
    progress.configure(True)
    quiet = Terminal()
    progress.step("loading the model", stream=quiet)
    list(progress.rows(iter(frames), "scoring", stream=quiet))
    assert quiet.getvalue() == ""


# What MindSpore writes from C++, straight to fd 2: `[WARNING] DEVICE(1234,...)`, ...
MINDSPORE_LINE = re.compile(r"^\[(WARNING|ERROR)\] [A-Z_]+\(\d+")


class Said(logging.Handler):
    """The warnings MindSpore's Python logger lets through (past ids' filter)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def mindspore_says(monkeypatch):
    """Listens to MindSpore's logger (under pytest its console handler writes to a stream
    pytest swapped in, so capfd alone would miss it); deprecations are warned once per
    process, so MindSpore forgets it said them."""
    from mindspore import log as ms_log
    from mindspore.common import _decorator

    monkeypatch.setattr(_decorator, "DEPRECATE_SET", set())
    logger, said = ms_log._get_logger(), Said()
    logger.addHandler(said)
    yield said
    logger.removeHandler(said)


def test_a_sweep_off_a_terminal_logs_one_line_per_trial_and_no_mindspore_warning(
        tmp_path, capfd, mindspore_says):
    """A sweep as CI logs it (`> log 2>&1`): a line per trial, no bar redrawn, and none of
    MindSpore's warnings that mean nothing to the user: the deprecation of the FusedSparseAdam
    that `nn.Adam` builds (filtered by its message) and the prefix `load_param_into_net`
    removed from the checkpoint training wrote (fixed at the source: the names agree)."""
    summary = sweep(sweep_cfg(tmp_path, "sweep.n_trials=2", "trainer.epochs=1",
                              "tracking.log_plots=true"))
    out, err = capfd.readouterr()
    trials = [ln for ln in out.splitlines() if re.match(r"\[w0\] trial +\d+ ", ln)]
    assert len(trials) == 2 == summary["n_complete"] + summary["n_pruned"], out + err
    assert "\r" not in out + err and "trial/s" not in out + err  # no bar
    assert mindspore_says.lines == []
    assert [ln for ln in (out + err).splitlines() if MINDSPORE_LINE.match(ln)] == []


def test_mindspore_says_what_ids_does_not_filter(mindspore_says):
    """Only the listed messages are dropped: MindSpore's other warnings still reach the user."""
    from mindspore import log as ms_log

    from ids.model import runtime

    runtime.quiet_mindspore()
    runtime.quiet_mindspore()  # one filter, however often it is called
    ms_log.warning("'FusedSparseAdam' is deprecated from version 2.8.0 and will be removed")
    ms_log.warning("For 'load_param_into_net', 3 parameters in the 'net' are not loaded")
    assert mindspore_says.lines == ["For 'load_param_into_net', 3 parameters in the 'net' are "
                                    "not loaded"]
