"""A micro-batcher: many threads submit items, one worker runs them through a function in batches.

This is what lets several videos (scan) or live streams (watch) share one detector
and one X-ray engine: each source submits its own frames or crops and waits for its
own results, while the engine sees batches of up to `max_batch` items drawn from all
sources. A batch is cut when it is full, when its oldest item has waited `max_wait_s`
(the latency bound for live sources), or at once when a caller is blocked on a
result that is still queued (`result`), so one source alone never waits for company.

Example:
    >>> b = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=4, max_wait_s=0.01, name="double")
    >>> futures = b.submit_many([1, 2, 3])
    >>> [b.result(f) for f in futures]
    [2, 4, 6]
    >>> b.close()
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchObserver = Callable[[str, int, float], None]
"""Called after every batch with (batcher name, batch size, seconds the function took)."""


class MicroBatcher(Generic[T, R]):
    """Runs `fn(list_of_items) -> sequence_of_results` (one result per item, in order) on batches.

    Thread-safe. If `fn` raises, every future of that batch gets the exception and the
    worker carries on with the next batch.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int, max_wait_s: float, name: str,
                 observer: BatchObserver | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.fn, self.max_batch, self.max_wait_s, self.name = fn, max_batch, max_wait_s, name
        self.observer = observer
        self._queue: deque[tuple[T, Future, float]] = deque()
        self._cond = threading.Condition()
        self._flush = False
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"facexray-batch-{name}", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        """Items waiting for a batch."""
        return len(self._queue)

    def submit(self, item: T) -> Future[R]:
        """Queue one item; its result arrives on the returned future."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Iterable[T]) -> list[Future[R]]:
        """Queue several items at once (they stay adjacent, so they tend to share a batch)."""
        now = time.monotonic()
        futures: list[Future] = []
        with self._cond:
            if self._closed:
                raise RuntimeError(f"batcher {self.name!r} is closed")
            for item in items:
                fut: Future = Future()
                self._queue.append((item, fut, now))
                futures.append(fut)
            self._cond.notify_all()
        return futures

    def result(self, future: Future[R]) -> R:
        """Wait for `future`; if it is still queued, cut the pending batch now rather than wait for company."""
        if not (future.done() or future.running()):
            with self._cond:
                self._flush = True
                self._cond.notify_all()
        return future.result()

    def close(self) -> None:
        """Run what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join()

    def _next_batch(self) -> list[tuple[T, Future, float]] | None:
        with self._cond:
            while True:
                if self._queue:
                    waited = time.monotonic() - self._queue[0][2]
                    if (len(self._queue) >= self.max_batch or self._flush or self._closed
                            or waited >= self.max_wait_s):
                        n = min(self.max_batch, len(self._queue))
                        batch = [self._queue.popleft() for _ in range(n)]
                        if not self._queue:
                            self._flush = False
                        return batch
                    self._cond.wait(self.max_wait_s - waited)
                elif self._closed:
                    return None
                else:
                    self._flush = False
                    self._cond.wait()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [(item, fut) for item, fut, _ in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            t = time.perf_counter()
            try:
                results = self.fn([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batcher {self.name!r}: {len(results)} results for {len(live)} items")
            except BaseException as e:
                for _, fut in live:
                    fut.set_exception(e)
                continue
            seconds = time.perf_counter() - t
            for (_, fut), res in zip(live, results):
                fut.set_result(res)
            if self.observer is not None:
                self.observer(self.name, len(live), seconds)
