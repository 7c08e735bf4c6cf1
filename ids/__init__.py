"""ids: deep-learning network intrusion detection experiments (MindSpore, Optuna, MLflow).

On AVX-512 machines the oneDNN inside MindSpore 2.10 runs Conv1d with its slow reference kernel
("jit_uni_ncsp:conv+ref", ~200 ms for a 256x64x10 batch); capping oneDNN at AVX2 makes it pick a
fast kernel (~10 ms): about 6x more training windows/s for the default model. oneDNN reads the
cap at its first operation, so it is set when the package is imported, before any MindSpore op;
a value already in the environment wins (`ONEDNN_MAX_CPU_ISA=ALL` lifts the cap).

MLflow's usage telemetry is off unless asked for (`MLFLOW_DISABLE_TELEMETRY=false`): it is read
when mlflow is imported, and its thread sets and unsets a variable of this process's
environment while commands read it.
"""

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
