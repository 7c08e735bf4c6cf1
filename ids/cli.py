"""The commands: thin `@hydra.main` wrappers over the library, in one place.

    python -m ids.run | ids.sweep | ids.promote | ids.evaluate | ids.predict   [overrides]

Each of those modules is library code that ends with `cli.<command>()` under `__main__`; the
work is done by plain functions (`run.train`, `sweep.sweep`, `promote.promote`,
`evaluate.evaluate`, `predict.predict`) that tests and notebooks call directly. Every command
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
from omegaconf import DictConfig

from ids import progress, tracking
from ids.config import CONF_DIR, ConfigError
from ids.data import DataError
from ids.metrics import ScoreError
from ids.modelfile import ModelFormatError
from ids.registry import RegistryError
from ids.train import NonFiniteLoss

KNOWN_ERRORS = (ConfigError, DataError, RegistryError, ScoreError, ModelFormatError, NonFiniteLoss)


def fail(exc: Exception) -> NoReturn:
    """Known bad input: one line that names the problem and the fix (secrets redacted)."""
    one_line = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    print(f"error: {tracking.redact(one_line)}", file=sys.stderr)
    sys.exit(2)


def command(body: Callable[[DictConfig], None]) -> Callable[[], None]:
    """`body(cfg)` as a Hydra command with the shared interrupt and error paths."""

    @functools.wraps(body)
    def main(cfg: DictConfig) -> None:
        import optuna

        tracking.end_runs_killed_on_sigterm()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        progress.configure(bool(cfg.quiet))
        try:
            body(cfg)
        except KNOWN_ERRORS as exc:
            fail(exc)

    return hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(main)


def _store_line(what: str, run_id: str, cfg: DictConfig) -> str:
    return (f"\nMLflow {what} {run_id} in {tracking.redact(cfg.tracking.uri)} "
            f"(experiment '{cfg.tracking.experiment}'); browse with `make ui`.")


@command
def run(cfg: DictConfig) -> None:
    """One training run, its test report and where it was logged."""
    from ids.run import report_text, train

    summary = train(cfg)
    print(report_text(cfg, summary))
    if "run_id" in summary:
        print(_store_line("run", summary["run_id"], cfg))


@command
def sweep(cfg: DictConfig) -> None:
    """Run or resume the Optuna study, then print its summary."""
    from ids import lineage
    from ids.study_report import print_summary
    from ids.sweep import sweep as run_sweep

    print_summary(cfg, run_sweep(cfg), lineage.cli_overrides())


@command
def promote(cfg: DictConfig) -> None:
    """Register the best trial, move the aliases, print the test report."""
    from ids import lineage
    from ids.promote import promote as run_promote
    from ids.promote import summary_text

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
    from ids import lineage
    from ids.evaluate import evaluate as run_evaluate

    result = run_evaluate(cfg, overrides=lineage.cli_overrides())
    print(result["report"])
    if result["run_id"]:
        print(_store_line("evaluation run", result["run_id"], cfg))


@command
def predict(cfg: DictConfig) -> None:
    """Score a file (or a stream with input=-/output=-) and say where the scores went."""
    from ids.predict import predict as run_predict

    run_predict(cfg)
