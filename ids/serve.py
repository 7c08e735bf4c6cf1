"""`python -m ids.serve [overrides]`: the model over HTTP, MLflow's scoring protocol: `ids.serving.http.serve` (see `ids.cli`)."""

from ids import cli

if __name__ == "__main__":
    cli.serve()
