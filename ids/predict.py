"""`python -m ids.predict [overrides]`: score flows from a file, or a stream with
`input=- output=-` (`ids.serving.predict.predict`); it says where the scores went. It imports
scoring only: no training, tuning or Optuna."""

from omegaconf import DictConfig

from ids.cli import command
from ids.serving.predict import predict


@command
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
