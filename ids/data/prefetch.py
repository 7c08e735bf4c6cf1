"""Iterate a producer in a background thread, a few items ahead of its consumer.

Two places overlap work this way: preparation parses and validates the next batch of flows
(pyarrow and pandas release the GIL for most of it) while the current one is hashed, and
training gathers the next batches on the host while MindSpore computes the current step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int = 3) -> Iterator[T]:
    """`items`, produced in a thread up to `depth` ahead. The producer's error reaches the
    consumer at the point where the item would have; a consumer that stops early stops the
    producer (it never blocks on a full queue)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="ids-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
