"""Write results in batches on one thread while many worker threads produce them.

LLM calls finish on many threads at once; each result is handed to a `BatchWriter`, whose single
thread takes everything that has arrived and writes it in one transaction. Results are saved as
they come (a crash loses at most the batch being written) without one transaction per call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """`put(item)` from any thread; `write(items)` runs on the writer thread for each batch.

    Use as a context manager: leaving it writes what is left and waits. The first error raised by
    `write` stops further writes and is re-raised on leaving (the producers' work is not lost when
    it is also cached, as LLM answers are)."""

    def __init__(self, write: Callable[[list[T]], Any], name: str = "batch-writer") -> None:
        self._write = write
        self._arrived: queue.Queue[T | None] = queue.Queue()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def put(self, item: T) -> None:
        self._arrived.put(item)

    def put_many(self, items: Iterable[T]) -> None:
        for item in items:
            self._arrived.put(item)

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[T] = []
            item = self._arrived.get()
            while True:  # take everything that has arrived, up to the end marker
                if item is None:
                    done = True
                    break
                batch.append(item)
                try:
                    item = self._arrived.get_nowait()
                except queue.Empty:
                    break
            if batch and not self.errors:
                try:
                    self._write(batch)
                except Exception as exc:  # noqa: BLE001 - re-raised by close()
                    self.errors.append(exc)

    def __enter__(self) -> BatchWriter[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._arrived.put(None)
        self._thread.join()
        if self.errors and exc[0] is None:
            raise self.errors[0]
