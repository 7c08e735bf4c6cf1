"""Everything MLflow: the store and runs that always end with a status (`store`), the signals
that end a command (`signals`), the databases behind the MLflow store and the Optuna storage:
reachable, created once by workers that start together (`database`), passwords out of
everything logged or printed (`redact`), what a run's page shows (`runpage`), a model
logged as files (`models`), the Model Registry and loading models from it (`registry`), and a
sweep's parent and trial runs (`sweeprun`).

May import: `ids.config`, `ids.data`, `ids.evaluation`, `ids.artifact`. Never Optuna: the
sweep hands it plain values.
"""
