"""Where a batch's images are processed, and how one is: `process_item` reads, processes and
writes one item; `Threads` runs it on this process's threads.

Threads, not processes: onnxruntime, Pillow's codecs and numpy release the GIL in their heavy loops,
so one process with one loaded model overlaps decoding, inference and encoding of different images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from bgremove import stamps
from bgremove.errors import FileFailed, NotAnImage
from bgremove.files import read_input
from bgremove.options import RemovalOptions
from bgremove.outcomes import Outcome, Status
from bgremove.plan import WorkItem

if TYPE_CHECKING:
    from bgremove.backends import Session
    from bgremove.batch import Batch


ABANDONED = "abandoned (interrupted twice)"


def process_item(session: Session, options: RemovalOptions, item: WorkItem,
                 write: Callable[[WorkItem, bytes], bool],
                 recipe: stamps.Recipe | None = None) -> Outcome:
    """Read, process and write one item: its outcome. `write(item, data)` says whether it wrote
    (False: writing has been stopped). An output written to a file carries the stamp of
    `recipe` and the input. StopBatch passes through; a file's own errors do not."""
    started = time.perf_counter()
    try:
        data, stat = read_input(item)
        result = session.process(data, options)
        output = result.data
        if recipe is not None and item.dest is not None:
            try:
                output = stamps.embed(output, recipe.stamp(data, stat))
            except ValueError as exc:
                raise FileFailed(str(exc)) from None
        if not write(item, output):
            return Outcome(item, Status.not_processed, ABANDONED)
    except NotAnImage as exc:
        if item.skip_if_not_image:  # a folder's other files are no concern of ours
            return Outcome(item, Status.not_image)
        return Outcome(item, Status.failed, ms=_ms_since(started), failure=exc)
    except FileFailed as exc:
        return Outcome(item, Status.failed, ms=_ms_since(started), failure=exc)
    return Outcome(item, Status.done, bytes=len(output), ms=_ms_since(started),
                   credits_remaining=result.credits_remaining, request_id=result.request_id,
                   credits_spent=result.credits_spent)


class Executor(Protocol):
    """Where a batch's images are processed: this process's threads (`Threads`), or a Dask
    cluster (`bgremove.cluster`). `Batch.run` feeds it items and records the outcomes of the
    futures it returns, on the calling thread, the same way for both."""

    workers: int  # images processed at once
    capacity: int  # items in flight at most: the batch takes no more from the plan

    def submit(self, item: WorkItem) -> Future[Outcome]: ...

    def flush(self) -> None:
        """Start what `submit` has held back (an executor may gather items into chunks)."""

    def stop(self) -> None:
        """The batch is stopping: work not started is not wanted. Called again and again."""

    def shutdown(self, abandon: bool) -> None: ...

    def abandon(self, pending: dict[Future[Outcome], WorkItem]) -> Iterator[Outcome]:
        """After a second stop: the outcomes of the work in flight, once nothing more is
        written."""


class Threads:
    """The local executor: `batch.process_one` on a pool of threads, twice as many items queued
    as there are threads."""

    def __init__(self, batch: Batch, workers: int):
        self.batch = batch
        self.workers = workers
        self.capacity = workers * 2
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="bgremove")

    def submit(self, item: WorkItem) -> Future[Outcome]:
        return self.pool.submit(self.batch.process_one, item)

    def flush(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def shutdown(self, abandon: bool) -> None:
        self.pool.shutdown(wait=not abandon, cancel_futures=True)

    def abandon(self, pending: dict[Future[Outcome], WorkItem]) -> Iterator[Outcome]:
        batch = self.batch
        batch.stop_writing()
        for future, item in pending.items():
            if item in batch.written:  # finished writing just now: only returning is left
                yield future.result()
            else:
                yield Outcome(item, Status.not_processed, ABANDONED)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
