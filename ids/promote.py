"""`python -m ids.promote [overrides]`: register the study's best trial and score it on test
(`ids.tuning.promote.promote`, see `ids.cli`)."""

from ids import cli

if __name__ == "__main__":
    cli.promote()
