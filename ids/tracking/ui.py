"""What `make ui` prints before MLflow's UI starts: the address of the experiment's runs table.

MLflow 3.17's UI opens an experiment on its GenAI overview (traces, token usage); the sweep's
parent run and its trials are in the runs table, `#/experiments/<id>/runs`. Which pages the UI
shows is its workspace switch (GenAI / Model training, kept in the browser), not the experiment's
`mlflow.experimentKind` tag: 3.17.2 derives the kind from the switch. So the address also sets
the switch, `?workflowType=machine_learning`. The id is looked up in the store (a store that does
not exist yet is not created: the UI does that), and an experiment made before ids declared its
kind gets the tag (`store.declare_kind`), for the MLflow versions that read it.

    python -m ids.tracking.ui --tracking-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000
"""

from __future__ import annotations

import argparse

from ids.tracking.database import sqlite_path
from ids.tracking.redact import redact

MODEL_TRAINING = "workflowType=machine_learning"  # the UI's "Model training" workspace


def runs_url(tracking_uri: str, experiment: str, base: str) -> tuple[str, str]:
    """(url, what it shows): the runs table of `experiment` in the store, or the experiments
    list when the store holds no such experiment yet."""
    db = sqlite_path(tracking_uri)
    if db is None or db.exists():
        from mlflow.tracking import MlflowClient

        from ids.tracking import store

        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            store.declare_kind(exp, client)
            return (f"{base}/#/experiments/{exp.experiment_id}/runs?{MODEL_TRAINING}",
                    f"the runs of experiment '{experiment}': a sweep's parent run sweep-<study>,"
                    " + unfolds its trials")
    return (f"{base}/#/experiments?{MODEL_TRAINING}",
            f"no experiment '{experiment}' in this store yet: `make sweep` or `make run` makes it")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", default="ids")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    base = f"http://{host}:{args.port}"
    try:
        url, what = runs_url(args.tracking_uri, args.experiment, base)
    except Exception as exc:  # noqa: BLE001 - a hint only: the UI starts and reports the store
        url, what = base, f"the store could not be read ({redact(str(exc).splitlines()[0])})"
    print(f"MLflow UI: {url}\n  {what}", flush=True)


if __name__ == "__main__":
    main()
