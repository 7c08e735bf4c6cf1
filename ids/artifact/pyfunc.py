"""The MLflow pyfunc face of a Scorer, for `mlflow.pyfunc.load_model` and `mlflow models serve`.

Logged from code (`ids/artifact/pyfunc_model.py`, MLflow's models-from-code), never pickled;
ids itself scores with `Scorer` directly and never runs this wrapper or that file from a model.

The model scores in graph mode. `make serve` sets `IDS_SERVE_THREADS` (cores / workers): each
worker then uses that many kernel threads and compiles every batch shape before the server
answers `/ping`, so no request pays for a compilation (elsewhere, e.g. in a notebook, shapes
compile on first use). Flows that cannot be scored
(a missing column, text in a count, ...) raise an `MlflowException` with the one-line reason as
its message: MLflow's server answers 400 with that reason in `message`, not only in a trace.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

from ids.artifact.scorer import Scorer
from ids.data.flows import DataError
from ids.model.runtime import setup_runtime

SERVE_THREADS = "IDS_SERVE_THREADS"  # set by `make serve`


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
            raise MlflowException(str(exc), error_code=BAD_REQUEST) from exc
