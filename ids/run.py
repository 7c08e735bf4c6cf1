"""`python -m ids.run [overrides]`: one training run (`ids.experiment.train.train`), its test
report and where it was logged."""

from omegaconf import DictConfig

from ids.cli import command, store_line
from ids.experiment.train import report_text, train


@command
def main(cfg: DictConfig) -> None:
    summary = train(cfg)
    print(report_text(cfg, summary))
    if "run_id" in summary:
        print(store_line("run", summary["run_id"], cfg))


if __name__ == "__main__":
    main()
