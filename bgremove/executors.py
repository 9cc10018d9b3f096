"""Where a batch's images are processed, and how one is: `process_item` reads, processes and
writes one item; `Threads` runs it on this process's threads. An executor gets what it needs of
the batch as a `BatchJob` (frozen when the run starts) and writes through the job's `WriteGate`; it
never calls back into the batch.

Threads, not processes: onnxruntime, Pillow's codecs and numpy release the GIL in their heavy loops,
so one process with one loaded model overlaps decoding, inference and encoding of different images.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bgremove import stamps
from bgremove.errors import FileFailed, NotAnImage
from bgremove.files import read_input, write_output
from bgremove.options import RemovalOptions
from bgremove.outcomes import Outcome, Status
from bgremove.plan import WorkItem

if TYPE_CHECKING:
    from bgremove.backends import Session


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


class WriteGate:
    """Where a batch's outputs are written. It counts the writes under way; once closed (a second
    stop) it refuses new ones and waits for those under way, so that after `close()` no file
    changes. `wrote(item)` says whether an item's output was written and not yet recorded."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._writing = 0
        self._closed = False
        self._written: set[WorkItem] = set()

    def write(self, item: WorkItem, data: bytes) -> bool:
        """Write the output unless the gate is closed; say whether it was written."""
        with self._lock:
            if self._closed:
                return False
            self._writing += 1
        written = False
        try:
            write_output(item, data)
            written = True
        finally:
            with self._lock:  # one step with the count, so close() sees both at once
                self._writing -= 1
                if written:
                    self._written.add(item)
                self._lock.notify_all()
        return True

    def close(self) -> None:
        """Refuse new writes and wait for those under way."""
        with self._lock:
            self._closed = True
            self._lock.wait_for(lambda: self._writing == 0)

    def wrote(self, item: WorkItem) -> bool:
        with self._lock:
            return item in self._written

    def recorded(self, item: WorkItem) -> None:
        """The item's outcome is recorded: forget it (memory stays flat over a long batch)."""
        with self._lock:
            self._written.discard(item)


@dataclass(frozen=True)
class BatchJob:
    """What an executor needs of a batch, fixed when the run starts: the session (None when the
    images are processed elsewhere), the options, the recipe its stamps name, whether outputs
    are all made again, the output folder (None: one file, or stdout), and the gate every output
    is written through."""

    session: Session | None
    options: RemovalOptions
    recipe: stamps.Recipe | None
    overwrite: bool
    output_folder: Path | None
    gate: WriteGate = field(compare=False)

    def process(self, item: WorkItem) -> Outcome:
        """Read, process and write one item here (`process_item` with this job's session)."""
        if self.session is None:
            raise ValueError("this job has no session: its images are processed elsewhere")
        return process_item(self.session, self.options, item, self.gate.write, self.recipe)


class Executor(Protocol):
    """Where a batch's images are processed: this process's threads (`Threads`), or a Dask
    cluster (`bgremove.cluster`). `Batch.run` starts it with the run's BatchJob, feeds it items and
    records the outcomes of the futures it returns, on the calling thread, the same way for
    both. An outcome `not processed` without a reason gets the batch's (interrupted, or
    stopped)."""

    workers: int  # images processed at once
    capacity: int  # items in flight at most: the batch takes no more from the plan

    def start(self, job: BatchJob) -> None:
        """The run begins: what every item is processed with. Called before the first submit."""

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
    """The local executor: the job's session on a pool of `workers` threads, twice as many
    items queued as there are threads."""

    def __init__(self, workers: int):
        self.workers = workers
        self.capacity = workers * 2
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="bgremove")
        self.job: BatchJob | None = None

    def start(self, job: BatchJob) -> None:
        self.job = job  # without a session (a dry run) nothing is submitted

    def submit(self, item: WorkItem) -> Future[Outcome]:
        assert self.job is not None, "start() comes first"
        return self.pool.submit(self.job.process, item)

    def flush(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def shutdown(self, abandon: bool) -> None:
        self.pool.shutdown(wait=not abandon, cancel_futures=True)

    def abandon(self, pending: dict[Future[Outcome], WorkItem]) -> Iterator[Outcome]:
        assert self.job is not None
        gate = self.job.gate
        gate.close()
        for future, item in pending.items():
            if gate.wrote(item):  # finished writing just now: only returning is left
                yield future.result()
            else:
                yield Outcome(item, Status.not_processed, ABANDONED)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
