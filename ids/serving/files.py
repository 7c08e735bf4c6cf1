"""Score a file of flows with a logged or registered model: a score and a label per flow.

    python -m ids.predict input=flows.csv output=alerts.csv       # models:/ids-cnn-bilstm@champion
    python -m ids.predict model_uri=runs:/<run id>/model input=flows.csv.gz output=alerts.csv.gz
    python -m ids.predict input=big.csv output=alerts.csv chunk_size=500000
    python -m ids.predict input=flows.csv output=alerts.csv overwrite=true  # replace alerts.csv

The output's folder must exist and the output must not (unless overwrite=true), and it must be
a regular file (`ids.outputs`: a FIFO or a device is refused); it is written as
`<output>.partial` and renamed when complete, so an error, Ctrl-C or SIGTERM leaves nothing
under the output's name and an existing file as it was.

The file is read `chunk_size` rows at a time (csv, csv.gz/bz2/xz/zst, zip with one CSV, parquet),
so it may be larger than memory. A flow's window holds it and the `window - 1` flows before it in
the file, across chunk borders: the last transformed rows of a chunk are carried into the next
one, and only the first flows of the file see zero padding (as a split start does in training).

Output columns, in input order:
  flow                   0-based position of the flow in the input (header excluded)
  IPV4_SRC_ADDR ... L4_DST_PORT   the identifiers, when the input has them (who to look at)
  Label, Attack          the ground truth, passed through when the input has them
  score                  attack probability (float32)
  label                  1 = attack (score >= the model's own threshold, tuned on validation)

A model whose windows are grouped (`data.window_by=host|pair`) takes a flow's window from the
flows of the same source (and destination) before it in the file, carried across chunks for
at most `score_max_hosts` hosts (`ids.artifact.hosts`); a model trained with
`data.time_gap=true` measures each flow's time since its source's previous flow in the file
the same way (each source's last start carried across chunks, for as many hosts).

Scores are computed in blocks of the model's `eval_batch_size` flows counted from the file
start, whatever `chunk_size` is, each distinct window of a block once, and a window an earlier
block already had is looked up instead (`ids.artifact.scorer.Scorer.score_matrix`, its memo of
`score_memo_mb`): labels do not depend on `chunk_size`, scores only by float32 rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ids import outputs, progress
from ids.artifact.hosts import MAX_HOSTS
from ids.artifact.scorer import PRED_LABEL, SCORE, Scorer
from ids.config import ConfigError
from ids.data.flows import DataError, validate_frame
from ids.data.reader import FlowFile, not_a_file
from ids.serving.rows import carry, passthrough, write_csv
from ids.tracking import registry


def read_chunks(path: str | Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Raw frames of at most `chunk_size` rows, in file order, indexed by their row in the file
    (`ids.data.reader`, the reader training uses too)."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        if p.exists():
            raise DataError(f"input={p} {not_a_file(p)}")
        raise DataError(f"input file not found: {p}; set input=<path of a NetFlow CSV>")
    if int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, but got {chunk_size}")
    return FlowFile(p, key="input").batches(int(chunk_size))


def predict_file(model_uri: str, input: str | Path, output: str | Path,
                 chunk_size: int = 100_000, *, scorer: Scorer | None = None,
                 tracking_uri: str | None = None, overwrite: bool = False) -> int:
    """Score every flow of `input` into `output` (csv or csv.gz); returns the number of rows.

    `tracking_uri` is the MLflow store for models:/ and runs:/ URIs (default: the current one);
    pass an already loaded `scorer` to skip loading. The output appears only when complete.
    """
    if scorer is None:
        if tracking_uri and registry.needs_store(str(model_uri)):
            registry.connect(tracking_uri)
        scorer = registry.load_scorer(registry.resolve_model(str(model_uri)))
    return score_file(scorer, input, output, chunk_size, overwrite)[0]


def score_file(scorer: Scorer, input: str | Path, output: str | Path,
               chunk_size: int = 100_000, overwrite: bool = False,
               keep_out: tuple[tuple[str, str], ...] = (),
               max_hosts: int = MAX_HOSTS) -> tuple[int, int]:
    """(flows scored, attack alerts): the work of `predict_file` with a loaded scorer. Writes
    `<output>.partial` beside the output and renames it when complete: an error or an
    interrupt leaves no output, and never a truncated one under the final name
    (`ids.outputs.replacing`); `keep_out`: folders the output may not be inside. A grouped
    model (`data.window_by=host|pair`) carries each host's last flows from chunk to chunk,
    for at most `max_hosts` hosts (`ids.artifact.hosts`)."""
    if scorer.window_by != "none":
        return _score_grouped(scorer, input, output, chunk_size, overwrite, keep_out, max_hosts)
    state = scorer.host_state(max_hosts)  # a time-gap model's last start of each source
    pad, block = scorer.context_rows, int(scorer.eval_batch_size)
    context: np.ndarray | None = None
    pending_X: list[np.ndarray] = []
    pending_meta: list[pd.DataFrame] = []
    n_pending = n_rows = n_written = n_alerts = 0

    def flush(fh, final: bool) -> None:
        nonlocal context, pending_X, pending_meta, n_pending, n_written, n_alerts
        take = n_pending if final else n_pending // block * block
        if take == 0:
            return
        X = np.concatenate(pending_X)
        meta = pd.concat(pending_meta, ignore_index=True)
        scores = scorer.score_matrix(X[:take], context)
        alert = (scores >= scorer.threshold).astype(np.int8)
        part = meta.iloc[:take].assign(**{SCORE: scores, PRED_LABEL: alert})
        n_alerts += int(alert.sum())
        write_csv(part, fh, header=n_written == 0)
        context = carry(context, X[:take], pad)
        pending_X, pending_meta = [X[take:]], [meta.iloc[take:]]
        n_pending -= take
        n_written += take

    with outputs.replacing(output, overwrite=overwrite, inputs=(input,), keep_out=keep_out) as fh:
        for raw in progress.rows(read_chunks(input, chunk_size), f"scoring {input}"):
            if len(raw) == 0:
                continue
            try:
                X = scorer.encode(validate_frame(raw, require_label=False), state)[1]
            except DataError as exc:
                raise DataError(f"{input}: {exc}") from exc
            pending_X.append(X)
            pending_meta.append(passthrough(raw, n_rows))
            n_pending += len(raw)
            n_rows += len(raw)
            flush(fh, final=False)
        flush(fh, final=True)
        if n_rows == 0:
            raise DataError(f"{input} has no flows (only a header?): nothing to score")
    return n_rows, n_alerts


def _score_grouped(scorer: Scorer, input, output, chunk_size: int, overwrite: bool,
                   keep_out: tuple[tuple[str, str], ...], max_hosts: int) -> tuple[int, int]:
    """`score_file` for a grouped model: each chunk scored over each host's previous flows."""
    state = scorer.host_state(max_hosts)
    n_rows = n_alerts = 0
    with outputs.replacing(output, overwrite=overwrite, inputs=(input,), keep_out=keep_out) as fh:
        for raw in progress.rows(read_chunks(input, chunk_size), f"scoring {input}"):
            if len(raw) == 0:
                continue
            try:
                flows, X = scorer.encode(validate_frame(raw, require_label=False), state)
                scores = scorer.score_flows(flows, X, state=state)
            except DataError as exc:
                raise DataError(f"{input}: {exc}") from exc
            alert = (scores >= scorer.threshold).astype(np.int8)
            write_csv(passthrough(raw, n_rows, **{SCORE: scores, PRED_LABEL: alert}), fh,
                      header=n_rows == 0)
            n_rows += len(raw)
            n_alerts += int(alert.sum())
        if n_rows == 0:
            raise DataError(f"{input} has no flows (only a header?): nothing to score")
    return n_rows, n_alerts
