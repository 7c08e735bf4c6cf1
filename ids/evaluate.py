"""`python -m ids.evaluate [overrides]`: re-evaluate a model: `ids.experiment.evaluate.evaluate` (see `ids.cli`)."""

from ids import cli

if __name__ == "__main__":
    cli.evaluate()
