"""The MLflow pyfunc face of a Scorer, for `mlflow.pyfunc.load_model` and `mlflow models serve`.

Logged from code (`ids/artifact/pyfunc_model.py`, MLflow's models-from-code), never pickled;
ids itself scores with `Scorer` directly and never runs this wrapper or that file from a model
(`make serve` is ids' own server, `ids.serving.http`).

The model scores in graph mode. With `IDS_SERVE_THREADS` set (e.g. cores / workers for
`mlflow models serve --workers N`) each worker uses that many kernel threads and compiles
every batch shape before the server answers `/ping`, so no request pays for a compilation
(elsewhere, e.g. in a notebook, shapes compile on first use). Flows that cannot be scored
(a missing column, text in a count, ...) raise `BadFlows`: MLflow's server answers 400 with the
one-line reason as `message` (not only in a stack trace, nor after a print of the whole input).
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

from ids.artifact.scorer import Scorer
from ids.data.flows import DataError
from ids.model.runtime import setup_runtime

SERVE_THREADS = "IDS_SERVE_THREADS"  # as ids.serving.http sets it for its workers


class BadFlows(MlflowException):
    """Flows that cannot be scored: HTTP 400 whose `message` is the reason alone (MLflow's
    server rewrites `message` to start with a print of the whole input frame)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, error_code=BAD_REQUEST)
        self.reason = reason

    def serialize_as_json(self) -> str:
        return json.dumps({"error_code": self.error_code, "message": self.reason})


class IdsPyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict(raw_flows)` -> DataFrame with `score` and `label` per flow.
    Logged from code (`ids/artifact/pyfunc_model.py`), never pickled."""

    def load_context(self, context) -> None:
        serving = os.environ.get(SERVE_THREADS, "")
        setup_runtime(SimpleNamespace(mode="graph", threads=int(serving or 0)))
        self.scorer = Scorer.load(context.artifacts["scorer"])
        if serving:
            self.scorer.warm_up()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        try:
            return self.scorer.predict(model_input)
        except DataError as exc:  # bad flows, not a server fault: 400 with the reason
            raise BadFlows(str(exc)) from exc
