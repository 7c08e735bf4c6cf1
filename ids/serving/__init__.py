"""Scoring new flows with a model: files (`files`), pipes (`stream`), what both carry across
reads (`rows`), and the `ids.predict` command body (`predict`). HTTP serving is MLflow's
scoring server over `ids.artifact.pyfunc`.

May import: `ids.data`, `ids.model.runtime`, `ids.artifact`, `ids.tracking.registry`; never
`ids.model.fit`, `ids.experiment` or `ids.tuning`.
"""
