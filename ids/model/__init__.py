"""The network and how it learns: the CNN-BiLSTM (`network`, `lstm`), the MindSpore runtime and
scoring of windows (`runtime`), what an epoch feeds the step and how a split is scored, each
distinct window once (`feed`), where a run's seconds go (`budget`), and the training loop with
its validation-tuned threshold (`fit`).

May import: `ids.config`, `ids.data`, `ids.evaluation.metrics` (the threshold search). Scoring
code (`ids.artifact`, `ids.serving`) uses `network` and `runtime`, never `fit`.
"""
