"""The Optuna side: the search space and start points (`space`), the study, its storage,
samplers, pruners and champion (`study`), the sweep loop and its workers (`sweep`), the study's
MLflow runs seen from Optuna (`runs`), the summary and best.yaml (`report`), and `promote`.

May import: everything below it (`ids.experiment`, `ids.tracking`, ...); nothing imports it
but `ids.cli` and `ids.tools`.
"""
