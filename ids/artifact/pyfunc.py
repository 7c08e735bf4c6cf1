"""The MLflow pyfunc face of a Scorer, for `mlflow.pyfunc.load_model` and `mlflow models serve`.

Logged from code (`ids/artifact/pyfunc_model.py`, MLflow's models-from-code), never pickled;
ids itself scores with `Scorer` directly and never runs this wrapper or that file from a model.
"""

from __future__ import annotations

import mindspore as ms
import mlflow.pyfunc
import pandas as pd

from ids.artifact.scorer import Scorer


class IdsPyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict(raw_flows)` -> DataFrame with `score` and `label` per flow.
    Logged from code (`ids/artifact/pyfunc_model.py`), never pickled."""

    def load_context(self, context) -> None:
        ms.set_device("CPU")
        self.scorer = Scorer.load(context.artifacts["scorer"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.scorer.predict(model_input)
