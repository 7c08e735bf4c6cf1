"""`python -m ids.run [overrides]`: one training run: `ids.experiment.train.train` (see `ids.cli`)."""

from ids import cli

if __name__ == "__main__":
    cli.run()
