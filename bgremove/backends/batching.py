"""Batched inference for accelerators: worker threads hand their model inputs to one thread that
runs them together.

On a GPU, one run of N inputs costs little more than a run of one, and small runs one after
another leave the device idle while Python hands each over. So with the model on a GPU, the
workers (which decode, resize and encode on the CPU) put their inputs in a queue; one thread runs
whatever has gathered there as one batch, and while the device works the next batch gathers.
Nothing waits on a timer: a lone input runs at once. On the CPU a batch gains nothing (the cores
are already busy with one image each), so it is used only for accelerators.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Run = Callable[[np.ndarray], np.ndarray]  # N x C x H x W in, N x ... out


class Batcher:
    """Call it with inputs (N x C x H x W, N usually 1); it returns their outputs (N x ...),
    computed in one run with whatever other threads asked for meanwhile (inputs of one size
    together)."""

    def __init__(self, run: Run, *, max_batch: int = 16):
        self.run = run
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[np.ndarray, Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bgremove-batcher")
        self._thread.start()
        self.batches = 0  # how many runs, and how many inputs they took: for tests and -v
        self.inputs = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        future: Future[np.ndarray] = Future()
        self._queue.put((x, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            waiting = [first]
            while len(waiting) < self.max_batch:  # what has gathered while the last run ran
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop once this batch is done
                    break
                waiting.append(item)
            by_shape: dict[tuple[int, ...], list[tuple[np.ndarray, Future]]] = {}
            for x, future in waiting:
                by_shape.setdefault(x.shape[1:], []).append((x, future))
            for group in by_shape.values():
                self._run(group)

    def _run(self, group: list[tuple[np.ndarray, Future]]) -> None:
        try:
            out = self.run(np.concatenate([x for x, _ in group]) if len(group) > 1 else group[0][0])
        except BaseException as exc:  # the callers raise it, each on its own thread
            for _, future in group:
                future.set_exception(exc)
            return
        self.batches += 1
        start = 0
        for x, future in group:
            future.set_result(out[start : start + len(x)])
            start += len(x)
        self.inputs += start
