"""Score flows as they arrive: `python -m ids.predict input=- output=-`.

    tail -n +1 -f flows.csv | python -m ids.predict input=- output=- alerts_only=true
    zcat flows.csv.gz | python -m ids.predict input=- output=- > scored.csv

Standard input is CSV in the published NetFlow column layout (the NF-* files' column names,
nProbe's; a header line first). Every flow is scored as soon as its line is complete: a flow's window is the flow
itself and the `window - 1` flows before it, which have all arrived by then; the last
transformed flows are carried across reads exactly as in chunked file mode, so the output
equals `ids.predict` on the whole file, byte for byte, however the input was split. Whatever
is readable at once is scored in one batch (one model call), and the output is flushed after
every batch, so a pipe sees alerts promptly. `alerts_only=true` writes only flows labelled
attack (the header still comes first; `flow` numbers the input flows, 0-based). With
`output=<file>` the file follows the rules of file mode (`ids.outputs`: it must not exist
unless overwrite=true, and it appears, whole, when the input ends).
"""

from __future__ import annotations

import io
import os
import select
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import pandas as pd

from ids import outputs
from ids.artifact.hosts import MAX_HOSTS
from ids.artifact.scorer import PRED_LABEL, SCORE, Scorer
from ids.config import ConfigError
from ids.data import limits
from ids.data.flows import DataError, validate_frame
from ids.data.limits import size
from ids.data.reader import not_a_file
from ids.serving.rows import carry, passthrough, write_csv
from ids.tracking.redact import unwrapped

READ_BYTES = 1 << 16
MAX_BATCH_BYTES = 1 << 22  # score at least every 4 MB even when the input never pauses


def _read_available(fd: int) -> bytes:
    """Block until something is readable, then take what else is already there (up to
    MAX_BATCH_BYTES); b"" at end of input."""
    data = os.read(fd, READ_BYTES)
    if not data:
        return b""
    parts = [data]
    size = len(data)
    while size < MAX_BATCH_BYTES:
        try:
            ready, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):  # not selectable (a regular file): plain reads suffice
            break
        if not ready:
            break
        more = os.read(fd, READ_BYTES)
        if not more:
            break
        parts.append(more)
        size += len(more)
    return b"".join(parts)


def _check_lengths(lines: list[bytes], first: int) -> None:
    """DataError for a line longer than MAX_ROW_BYTES (`first`: the flow number of lines[0],
    -1 for the header line): whatever does not end was held in memory."""
    for i, line in enumerate(lines):
        if len(line) > limits.MAX_ROW_BYTES:
            where = "header line" if first + i < 0 else f"flow {first + i} (0-based)"
            raise DataError(f"standard input, {where}: a line longer than "
                            f"{size(limits.MAX_ROW_BYTES)} (a flow takes a few hundred bytes); "
                            "send CSV flows, one per line")


def score_stream(scorer: Scorer, source: BinaryIO, sink: TextIO,
                 alerts_only: bool = False, max_hosts: int = MAX_HOSTS) -> tuple[int, int]:
    """(flows scored, attack alerts): score the CSV lines of `source` as they arrive into
    `sink` (same columns as `ids.predict` file output); a grouped model keeps each host's
    last flows from batch to batch, a time-gap model each source's last start time (at most
    `max_hosts` hosts)."""
    state = scorer.host_state(max_hosts)  # grouped windows, a time-gap model's last starts
    fd = source.fileno()
    header: str | None = None
    rest = b""
    context: np.ndarray | None = None
    n_rows = n_alerts = 0
    wrote_header = False
    eof = False
    while not eof:
        data = _read_available(fd)
        eof = not data
        buf = rest + data
        if eof:
            lines, rest = buf.splitlines(), b""
        else:
            cut = buf.rfind(b"\n") + 1
            lines, rest = buf[:cut].splitlines(), buf[cut:]
        _check_lengths([*lines, rest], n_rows - (header is None))
        text = [ln.decode("utf-8", errors="replace").rstrip("\r") for ln in lines]
        text = [t for t in text if t.strip()]
        if header is None and text:
            header, text = text[0], text[1:]
        if not text:
            continue
        try:
            raw = pd.read_csv(io.StringIO("\n".join([header, *text])), low_memory=False)
        except pd.errors.ParserError as exc:
            raise DataError(f"standard input, flows {n_rows}-{n_rows + len(text) - 1}: not CSV "
                            f"in the header's layout ({exc})") from exc
        try:
            flows, X = scorer.encode(validate_frame(raw, require_label=False), state)
            scores = scorer.score_flows(flows, X, context, state)
        except DataError as exc:
            raise DataError(f"standard input, flows {n_rows}-{n_rows + len(raw) - 1} (0-based): "
                            f"{exc}") from exc
        alert = (scores >= scorer.threshold).astype(np.int8)
        part = passthrough(raw, n_rows, **{SCORE: scores, PRED_LABEL: alert})
        if alerts_only:
            part = part[part[PRED_LABEL] == 1]
        write_csv(part, sink, header=not wrote_header)
        sink.flush()
        wrote_header = True
        context = carry(context, X, scorer.context_rows)
        n_rows += len(raw)
        n_alerts += int(alert.sum())
    if header is None:
        raise DataError("standard input was empty: send CSV flows with a header line (the "
                        "published NetFlow column names)")
    if n_rows == 0:  # a header and no flows: the rule of files (`ids.serving.files`)
        raise DataError("standard input has no flows (only a header line): nothing to score")
    return n_rows, n_alerts


def main(cfg, scorer: Scorer, ref, keep_out: tuple[tuple[str, str], ...] = ()) -> None:
    """`ids.predict` with `input=-` and/or `output=-`; the summary goes to stderr (stdout may
    be the scores). `keep_out`: folders an output file may not be inside."""
    import sys
    import time


    inp, out = str(cfg.input), str(cfg.output)
    if inp != "-" and not os.path.isfile(inp):
        if os.path.exists(inp):
            raise DataError(f"input={inp} {not_a_file(Path(inp))}")
        raise DataError(f"input file not found: {inp}; set input=<path of a NetFlow CSV> or -")
    if inp != "-" and not inp.lower().endswith(".csv"):
        raise ConfigError(f"output=- streams plain CSV: input={inp} must be - (standard input) "
                          "or a .csv file; for other files use output=<file>")
    started = time.perf_counter()
    if inp == "-" and (sys.stdin is None or sys.stdin.closed):
        raise DataError("standard input is closed: pipe CSV flows into `ids.predict input=-`, "
                        "or pass input=<file>")
    if out == "-" and (sys.stdout is None or sys.stdout.closed):
        raise outputs.OutputError("output=-: standard output is closed; redirect it to a file "
                                  "or a pipe, or pass output=<file>")
    src = sys.stdin.buffer if inp == "-" else open(inp, "rb")  # noqa: SIM115
    try:
        if out == "-":
            # the scores are data, written as they are (not through the redacting stream)
            n, alerts = score_stream(scorer, src, unwrapped(sys.stdout), bool(cfg.alerts_only),
                                     int(cfg.score_max_hosts))
        else:  # a file: the rules and the .partial of ids.outputs, as in file mode
            with outputs.replacing(out, overwrite=bool(cfg.overwrite), inputs=(inp,),
                                   keep_out=keep_out) as sink:
                n, alerts = score_stream(scorer, src, sink, bool(cfg.alerts_only),
                                         int(cfg.score_max_hosts))
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    if not cfg.quiet:
        seconds = time.perf_counter() - started
        by = "" if scorer.window_by == "none" else f" over each {scorer.window_by}'s flows"
        by += ", with each source's time gap" if scorer.time_gap else ""
        print(f"scored {n:,} flows from {'standard input' if inp == '-' else inp} with "
              f"{ref.label} (window {scorer.window}{by}, threshold {scorer.threshold:.4f}) in "
              f"{seconds:.1f} s; attack alerts: {alerts:,}", file=sys.stderr)
