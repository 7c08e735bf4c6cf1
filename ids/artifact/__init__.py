"""A trained model as a file of data: the checked folder format (`modelfile`) and the memory
its sizes need against what this machine has (`bounds`), the `Scorer`
that turns raw flows into scores with the model's own preprocessing, window and threshold
(`scorer`) and keeps the scores of windows it has seen (`memo`) and, for host windows, each
host's last flows (`hosts`), and its MLflow pyfunc face
(`pyfunc`, `pyfunc_model`).

May import: `ids.config`, `ids.data`, `ids.model.network`, `ids.model.runtime` (never `ids.model.fit`);
`pyfunc` alone imports MLflow (the base class it must subclass).
"""
