"""The decoding threads: a fixed pool whose queue serves urgent jobs first."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")


class PriorityPool(Executor):
    """A fixed pool of decoding threads whose queue serves urgent jobs first.

    A caller who stopped speaking waits for a final result; it should not
    queue behind other calls' streaming chunks, which can wait a little.
    Nor behind its own: a queued job can be `promote`d to urgent.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, _Work | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._queued: dict[Future[Any], _Work] = {}  # jobs not yet taken by a thread
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return self._put(1, fn, args, kwargs)

    def submit_first(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        return self._put(0, fn, args, {})

    def _put(
        self, priority: int, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[_T]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[_T] = Future()
        work = _Work(future, fn, args, kwargs)
        with self._lock:
            self._queued[future] = work
        self._queue.put((priority, next(self._order), work))
        return future

    def promote(self, future: Future[Any]) -> bool:
        """Move a job still waiting in the queue ahead of the normal ones.

        The job is queued a second time as urgent; whichever entry a thread
        takes first runs it, the other is skipped. False if it already started.
        """
        with self._lock:
            work = self._queued.get(future)
        if work is None or self._closed:
            return False
        self._queue.put((0, next(self._order), work))
        return True

    def _work(self) -> None:
        while True:
            _, _, work = self._queue.get()
            if work is None:
                return
            with self._lock:
                if self._queued.pop(work.future, None) is None:
                    continue  # a promoted job's other entry: already taken
            if not work.future.set_running_or_notify_cancel():
                continue
            try:
                work.future.set_result(work.fn(*work.args, **work.kwargs))
            except BaseException as exc:
                work.future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    _, _, work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work.future.cancel()
            with self._lock:
                self._queued.clear()
        for _ in self._threads:  # after every job still queued
            self._queue.put((2, next(self._order), None))
        if wait:
            for thread in self._threads:
                thread.join()


@dataclass
class _Work:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
