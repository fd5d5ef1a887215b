"""Background work on a small thread pool, one job at a time per key (a volume, a task).

A job's exception is logged, never lost; `wait_idle()` lets tests and shutdown wait
for everything submitted so far. `every()` and `cancel()` are the periodic loops of
the services (heartbeats, power-state sync, the image cache manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("kumo.workers")


class KeyedWorkers:
    def __init__(self, name: str, workers: int) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._pending: set[Future[None]] = set()

    def lock(self, key: str) -> threading.Lock:
        """The lock every job on `key` holds while it runs (held: a job is at work)."""
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, key: str) -> None:
        """Drop `key`'s lock (the thing it guards is gone)."""
        with self._guard:
            self._locks.pop(key, None)

    def submit(self, key: str, job: Callable[[str], None]) -> Future[None]:
        """Run `job(key)` after any earlier job on the same key."""
        def run() -> None:
            with self.lock(key):
                try:
                    job(key)
                except Exception:
                    log.exception("%s %s of %s failed", self.name,
                                  getattr(job, "__name__", "job"), key)

        future = self._pool.submit(run)
        with self._guard:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[None]) -> None:
        with self._guard:
            self._pending.discard(future)

    def wait_idle(self, timeout: float = 120) -> None:
        """Block until every job submitted so far has finished."""
        with self._guard:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


async def every(interval: float, work: Callable[[], object], logger: logging.Logger,
                failure: str) -> None:
    """Run `work` in a thread every `interval` seconds until cancelled; a run that
    raises is logged (`failure`, with its traceback, on `logger`) and the next one
    comes as planned."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(work)
        except Exception:
            logger.exception(failure)


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a service's loop and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
