"""Looking one frame ahead: the optical flow of the next frame computed on a worker thread while
the current one optimizes (the flow needs only input frames)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from . import flow as flowlib


class FlowAhead:
    """Optical flow between input frames, computed one frame ahead on a worker thread.

    The flow needs only input frames, so the next frame's flow (and reliability mask) can be
    computed while the device optimizes the current frame; OpenCV releases the GIL. One worker,
    so the DIS object is never used by two threads at once.
    """

    def __init__(self, dis, threaded: bool):
        self.dis = dis
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow") if threaded else None
        self.pending: Optional[tuple[int, Future]] = None

    def _timed(self, current: np.ndarray, earlier: Sequence[np.ndarray]):
        started = time.perf_counter()
        pairs = [flowlib.flow_and_mask(current, frame, self.dis) for frame in earlier]
        return pairs, time.perf_counter() - started

    def prefetch(self, index: int, current: np.ndarray, earlier: Sequence[np.ndarray]) -> None:
        if self.pool is not None:
            self.pending = (index, self.pool.submit(self._timed, current, list(earlier)))

    def get(self, index: int, current: np.ndarray, earlier: Sequence[np.ndarray]):
        """([(backward flow, mask) to each earlier frame], seconds computing them) for frame
        ``index``."""
        if self.pending is not None and self.pending[0] == index:
            future, self.pending = self.pending[1], None
            return future.result()
        return self._timed(current, earlier)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def with_next(items: Iterable[Any]) -> Iterator[tuple[Any, Optional[Any]]]:
    """(item, the next item or None), reading one item ahead."""
    iterator = iter(items)
    current = next(iterator, None)
    while current is not None:
        upcoming = next(iterator, None)
        yield current, upcoming
        current = upcoming
