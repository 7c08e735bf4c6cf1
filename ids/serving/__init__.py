"""Scoring new flows with a model: files (`files`), pipes (`stream`), what both carry across
reads (`rows`), the `ids.predict` command body (`predict`) and HTTP (`http`: `make serve`, MLflow's
scoring protocol on uvicorn; `mlflow models serve` still works through `ids.artifact.pyfunc`).

May import: `ids.data`, `ids.model.runtime`, `ids.artifact`, `ids.tracking.registry`; never
`ids.model.fit`, `ids.experiment` or `ids.tuning`.
"""
