"""`python -m ids.predict [overrides]`: score flows from a file or a pipe: `ids.serving.predict.predict` (see `ids.cli`)."""

from ids import cli

if __name__ == "__main__":
    cli.predict()
