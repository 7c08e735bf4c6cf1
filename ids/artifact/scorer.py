"""Score raw flows with a trained model: preprocessing, windows, weights and threshold in one.

A `Scorer` is saved as a folder of data (`scorer.json`, `preprocessor.npz`, `weights.npz`; see
`ids.artifact.modelfile`) that is the artifact of the MLflow pyfunc model (`ids.artifact.pyfunc`),
so `mlflow.pyfunc.load_model(uri).predict(df)` scores flows in the published column layout
exactly like the in-process model. `Scorer.load` reads that folder as data: it never executes
code stored with a model (neither pickles nor the model's code file).
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import mindspore as ms
import numpy as np
import pandas as pd

from ids.artifact import hosts, modelfile
from ids.artifact.bounds import params
from ids.artifact.memo import ScoreMemo
from ids.data import encoding_state
from ids.data.distinct import distinct_windows
from ids.data.encoding import Preprocessor
from ids.data.flows import GAP_COLUMNS, validate_frame
from ids.data.windows import windows
from ids.model.network import build_model
from ids.model.runtime import predict_proba, warm_up

SCORE, PRED_LABEL = "score", "label"  # output columns; the input's truth is flows.LABEL


@dataclass
class Scorer:
    preprocessor: Preprocessor
    model_cfg: dict
    window: int
    threshold: float
    checkpoint: Path  # a MindSpore .ckpt from training, or the weights.npz of a saved Scorer
    eval_batch_size: int = 4096
    config: dict = field(default_factory=dict)  # the run's resolved data/model/trainer config

    def __post_init__(self) -> None:
        n_features = len(self.preprocessor.feature_names_)
        saved = Path(self.checkpoint).suffix == ".npz"  # else the checkpoint training just wrote
        if saved:
            arrays = modelfile.read_npz(Path(self.checkpoint))
            _sizes_agree(self.model_cfg, n_features, arrays)
        key = (n_features, int(self.window), json.dumps(dict(self.model_cfg), sort_keys=True,
                                                         default=str))
        model = _borrow(key) or build_model(n_features, self.window, _Obj(self.model_cfg))
        params = _weights(model, arrays) if saved else ms.load_checkpoint(str(self.checkpoint))
        ms.load_param_into_net(model, params)  # every weight: `_weights` checked the names
        model.set_train(False)
        self.model = model
        weakref.finalize(self, _give_back, key, model)
        self._lock = threading.Lock()  # MLflow's server scores requests in threads
        self.memo = ScoreMemo()  # scores of windows seen before; ScoreMemo(0): none kept
        self.hosts = self.host_state()  # a grouped model's per-host context across requests

    @property
    def context_rows(self) -> int:
        """Rows of preceding flows a window needs: carry them across chunk borders."""
        return self.window - 1

    def transform(self, flows: pd.DataFrame) -> np.ndarray:
        return self.preprocessor.transform(flows)

    def score_matrix(self, X: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """Scores for the rows of X; `context` holds the rows just before X (zeros if none).

        Each distinct window is computed once (NetFlow repeats itself: most flows of a real
        file are copies) and its score given to every flow that has it, and a window this
        Scorer has scored before is looked up (`memo`, across chunks, batches and requests); a
        window's score does not depend on which or how many windows are scored with it
        (`predict_proba`)."""
        pad = self.context_rows
        if context is None or pad == 0:
            ctx = np.zeros((0, X.shape[1]), np.float32)
        else:
            ctx = context[-pad:]
        full = np.concatenate([ctx.astype(np.float32), X])
        w = windows(full, self.window)  # rows before the file start are zeros
        distinct = distinct_windows(full, self.window, start=len(ctx))

        def compute(ends: np.ndarray) -> np.ndarray:
            return predict_proba(self.model, w[ends], self.eval_batch_size)

        with self._lock:
            return distinct.expand(self.memo.scores(full, distinct.first + len(ctx),
                                                    self.window, compute))

    @property
    def window_by(self) -> str:
        """What a window holds: `none` (the previous rows), `host` or `pair` (the previous
        flows of the same source, or source and destination: `ids.artifact.hosts`)."""
        return str(((self.config or {}).get("data") or {}).get("window_by") or "none")

    @property
    def time_gap(self) -> bool:
        """Whether the model reads the time since each source host's previous flow
        (`data.time_gap` of its logged config: `HOST_GAP_MS`, `HOST_FIRST`)."""
        return bool(((self.config or {}).get("data") or {}).get("time_gap"))

    @property
    def stateful(self) -> bool:
        """Whether scoring carries per-host state across chunks, lines and requests: grouped
        windows (each group's last flows) or time gaps (each source's last start time)."""
        return self.window_by != "none" or self.time_gap

    def host_state(self, max_hosts: int = hosts.MAX_HOSTS) -> hosts.HostState:
        """A new, empty per-host context for a file or a stream of this model's flows."""
        return hosts.HostState(self.context_rows, max_hosts)

    def encode(self, flows: pd.DataFrame,
               state: hosts.HostState | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """(the validated `flows` with the columns the model reads, their encoding): a
        `data.time_gap` model's gap columns are measured from each source host's last start
        in `state` (default the Scorer's own), which then holds this batch's. Flows that
        already hold them (`ids.evaluate` reads them measured over the whole file, as
        training did) keep them."""
        if self.time_gap and not all(c in flows.columns for c in GAP_COLUMNS):
            with self._lock:  # the state: MLflow's server scores requests in threads
                flows = (self.hosts if state is None else state).gaps(flows)
        return flows, self.transform(flows)

    def score_flows(self, flows: pd.DataFrame, X: np.ndarray, context: np.ndarray | None = None,
                    state: hosts.HostState | None = None) -> np.ndarray:
        """Scores of validated `flows` (encoded: `X`): over the previous rows (`context`:
        the rows just before) or, for a grouped model, over each group's previous flows
        (`state`: what earlier chunks, lines or requests left; default the Scorer's own)."""
        if self.window_by == "none":
            return self.score_matrix(X, context)
        keys = hosts.group_keys(flows, self.window_by)
        return self.score_grouped(X, keys, self.hosts if state is None else state)

    def score_grouped(self, X: np.ndarray, keys: np.ndarray,
                      state: hosts.HostState) -> np.ndarray:
        """Scores for the rows of X, flow i's window holding the previous flows of group
        `keys[i]` (`state`, then this batch); each distinct window once, the memo as ever."""
        with self._lock:  # the state too: MLflow's server scores requests in threads
            full, ends = state.layout(np.asarray(X, np.float32), keys)
            w = windows(full, self.window)
            distinct = distinct_windows(full, self.window, ends=ends)

            def compute(at: np.ndarray) -> np.ndarray:
                return predict_proba(self.model, w[at], self.eval_batch_size)

            return distinct.expand(self.memo.scores(full, ends[distinct.first], self.window,
                                                    compute))

    def scores(self, flows: pd.DataFrame) -> np.ndarray:
        """Scores of raw `flows` (a request); a grouped or time-gap model's host state lives
        on across calls."""
        if not self.stateful:
            return self.score_matrix(self.transform(flows))
        valid, X = self.encode(validate_frame(flows, require_label=False))
        return self.score_flows(valid, X)

    def warm_up(self) -> list[int]:
        """Compile every batch shape scoring can use, before the first flow arrives."""
        n_features = len(self.preprocessor.feature_names_)
        with self._lock:
            return warm_up(self.model, (self.window, n_features), self.eval_batch_size)

    def predict(self, flows: pd.DataFrame) -> pd.DataFrame:
        """Scores and labels of raw `flows` (`scores`)."""
        scores = self.scores(flows)
        return pd.DataFrame({SCORE: scores, PRED_LABEL: (scores >= self.threshold).astype(np.int64)},
                            index=flows.index)

    def save(self, folder: str | Path) -> Path:
        """JSON + npz only (format `ids.artifact.modelfile.FORMAT`, version `VERSION`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pre_meta, pre_arrays = encoding_state.state(self.preprocessor)
        modelfile.write_npz(folder / "preprocessor.npz", pre_arrays)
        modelfile.write_npz(folder / "weights.npz",
                            {p.name: p.asnumpy() for p in self.model.get_parameters()})
        meta = {"format": modelfile.FORMAT, "version": modelfile.VERSION,
                "model": dict(self.model_cfg), "window": int(self.window),
                "threshold": float(self.threshold), "eval_batch_size": int(self.eval_batch_size),
                "preprocessor": pre_meta, "config": self.config or {}}
        (folder / "scorer.json").write_text(json.dumps(meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Scorer:
        """Read and check a saved Scorer; ModelFormatError names what is wrong."""
        folder = Path(folder)
        meta = modelfile.read_meta(folder)
        pre = modelfile.preprocessor_from_state(meta["preprocessor"],
                                                modelfile.read_npz(folder / "preprocessor.npz"))
        return cls(pre, meta["model"], int(meta["window"]), float(meta["threshold"]),
                   folder / "weights.npz", int(meta["eval_batch_size"]), meta.get("config", {}))


# Compiled networks of Scorers that are gone, by (features, window, model settings): graph mode
# compiles each batch shape once per network (about a second each), so a process that loads
# models of one architecture again (`ids.evaluate` or a notebook over several versions, the
# tests) loads the new weights into a network that has its graphs already. At most a few idle
# ones per architecture are kept. A Scorer's `model` is its own only while the Scorer lives:
# keep the Scorer, never its network alone.
_IDLE: dict[tuple, list] = {}
_IDLE_LOCK = threading.Lock()
_IDLE_PER_KEY = 2


def _borrow(key: tuple):
    with _IDLE_LOCK:
        idle = _IDLE.get(key)
        return idle.pop() if idle else None


def _give_back(key: tuple, model) -> None:
    with _IDLE_LOCK:
        idle = _IDLE.setdefault(key, [])
        if len(idle) < _IDLE_PER_KEY:
            idle.append(model)


def _sizes_agree(model_cfg: dict, n_features: int, arrays: dict[str, np.ndarray]) -> None:
    """Before the network is built: scorer.json's layer sizes must roughly fit the values
    weights.npz holds (`bounds.params` is an upper estimate within 1.2x), or a damaged
    'lstm_units' would allocate gigabytes only to be refused by the shape check after."""
    held = sum(a.size for a in arrays.values())
    described = params(model_cfg, n_features) * int(model_cfg.get("members", 1))
    if described > 2 * held + 1000:
        raise modelfile.ModelFormatError(
            f"invalid ids model file: weights.npz does not fit the model in scorer.json: its "
            f"layer sizes describe about {described:,} parameters and weights.npz holds "
            f"{held:,} values; the two files do not belong together (one is damaged, or they "
            "come from different models): restore the model folder, or train it again")


def _weights(model, arrays: dict[str, np.ndarray]) -> dict[str, ms.Parameter]:
    """Saved arrays as parameters, after checking they are exactly the network's."""
    want = {p.name: tuple(p.shape) for p in model.get_parameters()}
    got = {k: tuple(a.shape) for k, a in arrays.items()}
    if got != want:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        raise modelfile.ModelFormatError(f"invalid ids model file: weights.npz does not fit the "
                                         f"model in scorer.json (differences: {diff})")
    broken = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if broken:
        raise modelfile.ModelFormatError(f"invalid ids model file: weights {broken[:3]} hold NaN "
                                         "or infinite values (a diverged training); retrain it")
    return {k: ms.Parameter(ms.Tensor(a.astype(np.float32)), name=k) for k, a in arrays.items()}


class _Obj(dict):
    """Attribute access to a plain dict (build_model reads cfg.kernel_size etc.)."""

    def __getattr__(self, key: str):
        try:
            return self[key]
        except KeyError as exc:  # getattr(obj, key, default) works for keys a model lacks
            raise AttributeError(key) from exc
