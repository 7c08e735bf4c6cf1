"""`python -m ids.sweep [overrides]`: the Optuna study: `ids.tuning.sweep.sweep` (see `ids.cli`)."""

from ids import cli

if __name__ == "__main__":
    cli.sweep()
