"""Judging scores: metrics and the threshold search (`metrics`), the reference models
(`baselines`), the Extra-Trees seed spread (`spread`), bootstrap intervals and the paired
verdict (`intervals`), the flows the model and Extra-Trees get wrong (`errors`), the report on
all and unseen flows (`scorecard`) and the figures (`plots`).

May import: `ids.data` (splits, copies). It scores arrays: no MindSpore, MLflow or Optuna.
"""
