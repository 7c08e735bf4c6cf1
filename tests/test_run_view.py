"""Issue 15: a trial's MLflow page shows the training first; baselines once per data setting
on the study's parent run; a one-line summary as description and tag (a standalone run's:
tests/test_tracking.py)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from ids.experiment.train import train
from ids.tracking import store


def _sections(metrics: dict) -> list[str]:
    """The MLflow UI's sections of a run's metrics tab, in its order: one per prefix before the
    last '/', sorted by name; keys without '/' go last ('Model metrics')."""
    return sorted({k.rsplit("/", 1)[0] for k in metrics if "/" in k})


def test_trials_show_curves_first_and_share_the_parents_baselines(tiny_cfg):
    cfg = tiny_cfg("trainer.epochs=2", "trainer.evaluate_test=false", "tracking.log_model=false",
                   "tracking.log_plots=false", "quiet=true")
    exp_id = store.configure(cfg.tracking)
    client = MlflowClient(str(cfg.tracking.uri))
    with store.start_run(exp_id, "sweep-test") as parent:
        parent_id = parent.info.run_id
    trials = [train(cfg, parent_run_id=parent_id, tags={"trial.number": str(i)})
              for i in range(2)]

    held = client.get_run(parent_id).data
    for name in ("all_attack", "extra_trees"):
        key = f"baseline/val/{name}/mcc"
        assert held.metrics[key] == trials[0]["baselines"][name]["mcc"]
        assert len(client.get_metric_history(parent_id, key)) == 1  # once, not once per trial
    assert held.tags["baselines.key"]

    for summary in trials:
        run = client.get_run(summary["run_id"]).data
        assert not [k for k in run.metrics if k.startswith("baseline/")]
        assert run.tags["baselines.run_id"] == parent_id
        # The metrics tab opens with the per-epoch curves; best-epoch figures come after.
        assert _sections(run.metrics)[:3] == ["train", "val", "val_best"]
        for key in ("train/loss", "val/loss", "val/mcc", "val/threshold"):
            assert [m.step for m in client.get_metric_history(summary["run_id"], key)] == [1, 2]
        assert "val/tn" not in run.metrics and run.metrics["val_best/tn"] >= 0
        assert run.metrics["val_best/mcc"] == summary["value"]
        line = run.tags["summary"]
        assert line.startswith(f"best epoch {summary['best_epoch']}/2; threshold "
                               f"{summary['threshold']:.4f}; val mcc {summary['value']:.4f}")
        note = run.tags["mlflow.note.content"]
        assert line in note and "extra_trees" in note  # the baselines it is compared with
