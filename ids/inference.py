"""Score raw flows with a trained model: preprocessing, windows, weights and threshold in one.

A `Scorer` is saved as a folder (`scorer.json`, `preprocessor.pkl`, `model.ckpt`) that is the
artifact of the MLflow pyfunc model, so `mlflow.pyfunc.load_model(uri).predict(df)` scores flows
in the published column layout exactly like the in-process model.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import mlflow.pyfunc
import numpy as np
import pandas as pd

from ids.data import Preprocessor
from ids.model import build_model
from ids.train import predict_proba

SCORE, LABEL = "score", "label"


@dataclass
class Scorer:
    preprocessor: Preprocessor
    model_cfg: dict
    window: int
    threshold: float
    checkpoint: Path
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        n_features = len(self.preprocessor.feature_names_)
        self.model = build_model(n_features, self.window, _Obj(self.model_cfg))
        ms.load_param_into_net(self.model, ms.load_checkpoint(str(self.checkpoint)))
        self.model.set_train(False)

    @property
    def context_rows(self) -> int:
        """Rows of preceding flows a window needs: carry them across chunk borders."""
        return self.window - 1

    def transform(self, flows: pd.DataFrame) -> np.ndarray:
        return self.preprocessor.transform(flows)

    def score_matrix(self, X: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """Scores for the rows of X; `context` holds the rows just before X (zeros if none)."""
        from ids.data import windows

        pad = self.context_rows
        if context is None or pad == 0:
            ctx = np.zeros((0, X.shape[1]), np.float32)
        else:
            ctx = context[-pad:]
        full = np.concatenate([ctx.astype(np.float32), X])
        w = windows(full, self.window)[len(ctx):]  # rows before the file start are zero-padded
        return predict_proba(self.model, w, self.eval_batch_size)

    def predict(self, flows: pd.DataFrame) -> pd.DataFrame:
        scores = self.score_matrix(self.transform(flows))
        return pd.DataFrame({SCORE: scores, LABEL: (scores >= self.threshold).astype(np.int64)},
                            index=flows.index)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.checkpoint, folder / "model.ckpt")
        with open(folder / "preprocessor.pkl", "wb") as fh:
            pickle.dump(self.preprocessor, fh)
        meta = {"model": self.model_cfg, "window": self.window, "threshold": self.threshold,
                "eval_batch_size": self.eval_batch_size,
                "feature_names": list(self.preprocessor.feature_names_)}
        (folder / "scorer.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Scorer:
        folder = Path(folder)
        meta = json.loads((folder / "scorer.json").read_text())
        with open(folder / "preprocessor.pkl", "rb") as fh:
            pre = pickle.load(fh)
        return cls(pre, meta["model"], int(meta["window"]), float(meta["threshold"]),
                   folder / "model.ckpt", int(meta.get("eval_batch_size", 4096)))


class _Obj(dict):
    """Attribute access to a plain dict (build_model reads cfg.kernel_size etc.)."""

    __getattr__ = dict.__getitem__


class IdsPyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict(raw_flows)` -> DataFrame with `score` and `label` per flow."""

    def load_context(self, context) -> None:
        ms.set_device("CPU")
        self.scorer = Scorer.load(context.artifacts["scorer"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.scorer.predict(model_input)


def load_scorer(model_uri: str) -> Scorer:
    """The Scorer behind a logged or registered model (runs:/..., models:/NAME@alias, a path)."""
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().scorer
