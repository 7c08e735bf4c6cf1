"""One experiment end to end: `train` (prepare, fit, score the test split once, log, report),
`evaluate` (a logged model on its own test split or another file) and `lineage` (a model is
scored on the data settings its run logged, not today's command line).

May import: `ids.data`, `ids.model`, `ids.evaluation`, `ids.artifact`, `ids.tracking`.
"""
