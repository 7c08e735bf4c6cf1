"""`python -m ids.serve [overrides]`: serve a model (default: the champion) over HTTP with
MLflow's scoring protocol until interrupted (`ids.serving.http.serve`)."""

from omegaconf import DictConfig

from ids.cli import command
from ids.serving.http import serve


@command
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
