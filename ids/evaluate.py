"""`python -m ids.evaluate [overrides]`: score a model on its own test split, or `input=FILE`
(`ids.experiment.evaluate.evaluate`), and print the report."""

from omegaconf import DictConfig

from ids.cli import command, store_line
from ids.experiment import lineage
from ids.experiment.evaluate import evaluate


@command
def main(cfg: DictConfig) -> None:
    result = evaluate(cfg, overrides=lineage.cli_overrides())
    print(result["report"])
    if result["run_id"]:
        print(store_line("evaluation run", result["run_id"], cfg))


if __name__ == "__main__":
    main()
