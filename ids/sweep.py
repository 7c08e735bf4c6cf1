"""`python -m ids.sweep [overrides]`: run or resume the Optuna study (`ids.tuning.sweep.sweep`),
then print its summary."""

import optuna
from omegaconf import DictConfig

from ids.cli import command
from ids.experiment import lineage
from ids.tuning.report import print_summary
from ids.tuning.sweep import sweep


@command
def main(cfg: DictConfig) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ids prints each trial itself
    print_summary(cfg, sweep(cfg), lineage.cli_overrides())


if __name__ == "__main__":
    main()
