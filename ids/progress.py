"""What a long command is doing and how far it is: bars on a terminal, short logs elsewhere.

Three levels, chosen once per process by `configure(quiet)` (every entry point passes the
config's `quiet` key):

- on a terminal (stderr is a TTY): a tqdm bar over epochs with train loss, the validation
  metric, threshold and ETA, a bar over the batches of a long epoch, one summary line per
  epoch, and a status line per step of evaluate / predict / promote / bench;
- not on a terminal (CI, `> log`): one summary line per epoch and nothing else, so logs stay
  short;
- `quiet=true`: nothing.

Everything goes to stderr: stdout keeps the reports (and `ids.predict output=-` its scores).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

_STATE = {"quiet": False}
BATCH_BAR_MIN = 50  # batches per epoch from which an inner bar over batches is drawn


def configure(quiet: bool) -> None:
    """Set once by an entry point from `cfg.quiet`."""
    _STATE["quiet"] = bool(quiet)


def _stream(stream: TextIO | None) -> TextIO:
    return sys.stderr if stream is None else stream


def on_terminal(stream: TextIO | None = None) -> bool:
    """Bars and status lines are drawn: not quiet and the stream is a terminal."""
    s = _stream(stream)
    return not _STATE["quiet"] and bool(getattr(s, "isatty", lambda: False)())


def verbose() -> bool:
    """Per-epoch lines are printed (terminal or not) unless quiet."""
    return not _STATE["quiet"]


def epoch_line(epoch: int, epochs: int, record: dict, metric: str, best: bool) -> str:
    """One line per epoch, the same on a terminal and in a log."""
    parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs}"]
    for key, label in (("train/loss", "train loss"), ("val/loss", "val loss"),
                       (f"val/{metric}", f"val {metric}"), ("val/threshold", "threshold")):
        if key in record:
            parts.append(f"{label} {record[key]:.4f}")
    if "epoch_seconds" in record:
        parts.append(f"{record['epoch_seconds']:.1f} s")
    return "  ".join(parts) + ("  *" if best else "")


class TrainingProgress:
    """Drives the display of one `train.fit`: pass `on_epoch` and `on_batch` to it."""

    def __init__(self, epochs: int, metric: str, stream: TextIO | None = None,
                 desc: str = "training", quiet: bool = False) -> None:
        self.epochs, self.metric, self.stream = int(epochs), metric, _stream(stream)
        self.tty = not quiet and on_terminal(self.stream)
        self.lines = not quiet and verbose()
        self.best: float | None = None
        self.bar = self.batches = None
        if self.tty:
            self.bar = tqdm(total=self.epochs, desc=desc, unit="epoch", file=self.stream,
                            dynamic_ncols=True, leave=True)

    def on_batch(self, done: int, total: int) -> None:
        if not self.tty or total < BATCH_BAR_MIN:
            return
        if self.batches is None:
            self.batches = tqdm(total=total, desc="  batches", unit="batch", file=self.stream,
                                dynamic_ncols=True, leave=False, mininterval=0.2)
        self.batches.update(done - self.batches.n)
        if done >= total:
            self.batches.close()
            self.batches = None

    def on_epoch(self, epoch: int, record: dict) -> None:
        value = record.get(f"val/{self.metric}")
        best = value is not None and (self.best is None or value > self.best)
        if best:
            self.best = value
        line = epoch_line(epoch, self.epochs, record, self.metric, best)
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"loss {record.get('train/loss', float('nan')):.4f} "
                f"{self.metric} {value if value is not None else float('nan'):.4f} "
                f"thr {record.get('val/threshold', float('nan')):.3f}", refresh=False)
            self.bar.update(1)
            self.bar.write(line, file=self.stream)
        elif self.lines:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        for bar in (self.batches, self.bar):
            if bar is not None:
                bar.close()
        self.bar = self.batches = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_T0 = time.perf_counter()


def step(what: str, stream: TextIO | None = None) -> None:
    """One status line on a terminal, `[  12.3 s] loading the model ...` (seconds since the
    command started); silent elsewhere. One line per step survives other output in between
    (MLflow's download bars, warnings)."""
    s = _stream(stream)
    if on_terminal(s):
        print(f"[{time.perf_counter() - _T0:6.1f} s] {what} ...", file=s, flush=True)


def counter(total: int | None, desc: str, unit: str, stream: TextIO | None = None):
    """A tqdm bar on a terminal, else a disabled one (update() costs nothing)."""
    s = _stream(stream)
    return tqdm(total=total, desc=desc, unit=unit, file=s, dynamic_ncols=True,
                disable=not on_terminal(s), unit_scale=True, leave=False, mininterval=0)


def rows(frames, desc: str, stream: TextIO | None = None):
    """Yield the frames of a chunked reader, counting their rows on a terminal bar."""
    with counter(None, desc, "flow", stream) as bar:
        for frame in frames:
            yield frame
            bar.update(len(frame))
