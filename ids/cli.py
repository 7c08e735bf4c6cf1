"""The commands: thin `@hydra.main` wrappers over the library, in one place.

    python -m ids.run | ids.sweep | ids.promote | ids.evaluate | ids.predict   [overrides]

Each of those modules is a two-line entry point that calls `cli.<command>()`; the work is done
by plain functions (`ids.experiment.train.train`, `ids.tuning.sweep.sweep`,
`ids.tuning.promote.promote`, `ids.experiment.evaluate.evaluate`, `ids.serving.predict.predict`)
that tests and notebooks call directly. Every command
shares one interrupt path (SIGTERM unwinds like Ctrl-C, so MLflow runs end KILLED and partial
files are removed) and one error path (known bad input ends with one line on stderr naming the
problem and the fix, exit code 2, no traceback).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import NoReturn

import hydra
import optuna
from omegaconf import DictConfig

from ids import progress
from ids.artifact.modelfile import ModelFormatError
from ids.config import CONF_DIR, ConfigError
from ids.data.flows import DataError
from ids.evaluation.metrics import ScoreError
from ids.experiment import lineage
from ids.experiment.evaluate import evaluate as run_evaluate
from ids.experiment.train import report_text, train
from ids.model.fit import NonFiniteLoss
from ids.serving.predict import predict as run_predict
from ids.tracking import store
from ids.tracking.redact import redact
from ids.tracking.registry import RegistryError
from ids.tuning.promote import promote as run_promote
from ids.tuning.promote import summary_text
from ids.tuning.report import print_summary
from ids.tuning.sweep import sweep as run_sweep

KNOWN_ERRORS = (ConfigError, DataError, RegistryError, ScoreError, ModelFormatError, NonFiniteLoss)


def fail(exc: Exception) -> NoReturn:
    """Known bad input: one line that names the problem and the fix (secrets redacted)."""
    one_line = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    print(f"error: {redact(one_line)}", file=sys.stderr)
    sys.exit(2)


def command(body: Callable[[DictConfig], None]) -> Callable[[], None]:
    """`body(cfg)` as a Hydra command with the shared interrupt and error paths."""

    @functools.wraps(body)
    def main(cfg: DictConfig) -> None:
        store.end_runs_killed_on_sigterm()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        progress.configure(bool(cfg.quiet))
        try:
            body(cfg)
        except KNOWN_ERRORS as exc:
            fail(exc)

    return hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(main)


def _store_line(what: str, run_id: str, cfg: DictConfig) -> str:
    return (f"\nMLflow {what} {run_id} in {redact(cfg.tracking.uri)} "
            f"(experiment '{cfg.tracking.experiment}'); browse with `make ui`.")


@command
def run(cfg: DictConfig) -> None:
    """One training run, its test report and where it was logged."""
    summary = train(cfg)
    print(report_text(cfg, summary))
    if "run_id" in summary:
        print(_store_line("run", summary["run_id"], cfg))


@command
def sweep(cfg: DictConfig) -> None:
    """Run or resume the Optuna study, then print its summary."""
    print_summary(cfg, run_sweep(cfg), lineage.cli_overrides())


@command
def promote(cfg: DictConfig) -> None:
    """Register the best trial, move the aliases, print the test report."""
    result = run_promote(cfg, overrides=lineage.cli_overrides())
    print(summary_text(cfg, result))
    ev = result.get("evaluation")
    if ev:
        print()
        print(ev["report"])
        if ev["run_id"]:
            print(_store_line("evaluation run", ev["run_id"], cfg))
    print(f"\nload it with models:/{result['name']}@{result['alias']} "
          f"(python -m ids.evaluate / ids.predict use it by default)")


@command
def evaluate(cfg: DictConfig) -> None:
    """Score a model on its own test split (or `input=FILE`) and print the report."""
    result = run_evaluate(cfg, overrides=lineage.cli_overrides())
    print(result["report"])
    if result["run_id"]:
        print(_store_line("evaluation run", result["run_id"], cfg))


@command
def predict(cfg: DictConfig) -> None:
    """Score a file (or a stream with input=-/output=-) and say where the scores went."""
    run_predict(cfg)
