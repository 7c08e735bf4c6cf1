"""Where a trial's seconds go: named parts that add up to the time measured.

    budget = Budget()
    with budget.part("train"):
        ...
        with budget.part("val"):   # nested: taken out of "train", never counted twice
            ...

The sweep fills one per trial (data, compile, train, val, tracking, search) and compares
their sum with the trial's wall time (`ids.tuning.report`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PARTS = ("data", "compile", "train", "val", "tracking", "search")


class Budget:
    """Seconds per part; a part opened inside another is subtracted from the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._inner: list[float] = []  # seconds of nested parts, per open part

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            self.add(name, elapsed - self._inner.pop())
            if self._inner:
                self._inner[-1] += elapsed

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    def total(self) -> float:
        return sum(self.seconds.values())


def part(budget: Budget | None, name: str):
    """`budget.part(name)`, or nothing to time when there is no budget."""
    return budget.part(name) if budget is not None else _nothing()


@contextmanager
def _nothing() -> Iterator[None]:
    yield
