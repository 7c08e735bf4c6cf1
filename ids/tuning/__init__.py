"""The Optuna side: the search space and start points (`space`), the study, its storage,
samplers, pruners and champion (`study`), one trial and what its pruner sees (`objective`),
the worker loop and worker processes (`workers`), the sweep (`sweep`), the study's
MLflow runs seen from Optuna (`runs`), the summary and best.yaml (`report`), and `promote`.

May import: everything below it (`ids.experiment`, `ids.tracking`, ...); nothing imports it
but the commands that use it (`ids/sweep.py`, `ids/promote.py`) and `ids.tools`.
"""
