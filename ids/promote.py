"""`python -m ids.promote [overrides]`: register the study's best trial, move the aliases and
score it on test (`ids.tuning.promote.promote`)."""

import optuna
from omegaconf import DictConfig

from ids.cli import command, store_line
from ids.experiment import lineage
from ids.tuning.promote import promote, summary_text


@command
def main(cfg: DictConfig) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = promote(cfg, overrides=lineage.cli_overrides())
    print(summary_text(cfg, result))
    ev = result.get("evaluation")
    if ev:
        print()
        print(ev["report"])
        if ev["run_id"]:
            print(store_line("evaluation run", ev["run_id"], cfg))
    print(f"\nload it with models:/{result['name']}@{result['alias']} "
          f"(python -m ids.evaluate / ids.predict use it by default)")


if __name__ == "__main__":
    main()
