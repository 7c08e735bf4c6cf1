"""The code file of every ids MLflow model (MLflow's models-from-code).

`ids.tracking.models.log_scorer` logs this file, the `ids` package (`code_paths`) and pinned
requirements with each model, so `mlflow.pyfunc.load_model(uri)` or `mlflow models serve` works in a clean
environment, and loading runs this package's code instead of unpickling an object. ids itself
never executes this file from a model: `ids.tracking.registry.load_scorer` reads the model's
data.
"""

from mlflow.models import set_model

from ids.artifact.pyfunc import IdsPyfuncModel

set_model(IdsPyfuncModel())
