"""The batch engine: feed work items through a backend on a pool of threads, write atomically.

Threads, not processes: onnxruntime, Pillow's codecs and numpy all release the GIL in their heavy
loops, so one process with one loaded model overlaps decoding, inference and encoding of
different images. The number of items in flight is bounded, so memory does not grow with the batch.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bgremove.backends import Backend
from bgremove.discover import Plan, WorkItem
from bgremove.errors import CreditLimitReached, FileFailed, StopBatch
from bgremove.options import RemovalOptions


@dataclass
class Outcome:
    """What happened to one work item."""

    item: WorkItem
    status: str  # done | skipped | failed | not processed | would process (--dry-run)
    error: str | None = None
    bytes: int = 0
    ms: float = 0.0
    credits_remaining: int | None = None
    request_id: str | None = None
    credits_spent: int = 0

    def as_dict(self) -> dict:
        return {
            "input": self.item.name,
            "output": self.item.output_name,
            "status": self.status,
            "error": self.error,
            "bytes": self.bytes,
            "ms": round(self.ms, 1),
            "credits_remaining": self.credits_remaining,
            "request_id": self.request_id,
        }


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    credits_spent: int = 0
    credits_remaining: int | None = None
    stopped: StopBatch | None = None
    interrupted: bool = False
    # Interrupted twice: work in flight was dropped unwritten and may still be running.
    abandoned: bool = False
    dry_run: bool = False
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.stopped is not None:
            return self.stopped.exit_code
        return 1 if self.failures else 0


class Reporter(Protocol):
    """Receives progress as it happens (see progress.py)."""

    def start(self, total: int) -> None: ...

    def update(self, outcome: Outcome, summary: Summary) -> None: ...

    def finish(self, summary: Summary) -> None: ...


def write_atomically(dest: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file.

    The temporary file is opened with mode 0666 so the umask decides, as for any new file
    (`tempfile.mkstemp` would make every output private to its owner, 0600).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_input(item: WorkItem) -> bytes:
    if item.source is None:
        return sys.stdin.buffer.read()
    try:
        return item.source.read_bytes()
    except IsADirectoryError:
        raise FileFailed("is a folder") from None
    except OSError as exc:
        raise FileFailed(f"cannot read: {exc.strerror or exc}") from None


def write_output(item: WorkItem, data: bytes) -> None:
    if item.dest is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomically(item.dest, data)


ABANDONED = "abandoned (interrupted twice)"


class Engine:
    """Runs a plan through a backend.

    Stopping: `interrupt()` (Ctrl-C, SIGTERM) stops taking new work; work in flight finishes and
    is written whole, so the next run starts exactly where this one stopped. A second
    `interrupt()` abandons the work in flight: nothing more is written and `run` returns at once
    (its worker threads may still be computing; see `Summary.abandoned`).
    """

    def __init__(
        self,
        backend: Backend | None,
        options: RemovalOptions,
        reporter: Reporter,
        *,
        workers: int = 2,
        overwrite: bool = False,
        max_credits: int | None = None,
        dry_run: bool = False,
    ):
        self.backend = backend
        self.options = options
        self.reporter = reporter
        self.workers = max(1, workers)
        self.overwrite = overwrite
        self.max_credits = max_credits
        self.dry_run = dry_run
        self.stop = threading.Event()
        self._lock = threading.Lock()
        # Counted, not signalled: interrupt() runs inside a signal handler, which must not take
        # a lock the interrupted main thread may be holding. The run loop polls the count.
        self._interrupts = 0
        # Writes in progress, and whether new ones are refused (after a second interrupt).
        self._writes = threading.Condition()
        self._writing = 0
        self._no_more_writes = False
        self._written: set[WorkItem] = set()

    def interrupt(self) -> None:
        """Stop the batch; called twice, abandon the work in flight. Safe in a signal handler."""
        self._interrupts += 1

    def process_one(self, item: WorkItem) -> Outcome:
        started = time.perf_counter()
        try:
            result = self.backend.process(read_input(item), self.options)
            if not self._write(item, result.data):
                return Outcome(item, "not processed", ABANDONED)
        except FileFailed as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Outcome(item, "failed", str(exc), ms=elapsed, request_id=exc.request_id)
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(
            item,
            "done",
            bytes=len(result.data),
            ms=elapsed,
            credits_remaining=result.credits_remaining,
            request_id=result.request_id,
            credits_spent=result.credits_spent,
        )

    def _write(self, item: WorkItem, data: bytes) -> bool:
        """Write the output unless writing has been stopped; say whether it was written."""
        with self._writes:
            if self._no_more_writes:
                return False
            self._writing += 1
        written = False
        try:
            write_output(item, data)
            written = True
        finally:
            with self._writes:  # one step with the count, so _stop_writing sees both at once
                self._writing -= 1
                if written:
                    self._written.add(item)
                self._writes.notify_all()
        return True

    def _stop_writing(self) -> None:
        """Refuse new writes and wait for those under way: after this, no file changes."""
        with self._writes:
            self._no_more_writes = True
            self._writes.wait_for(lambda: self._writing == 0)

    def _record(self, summary: Summary, outcome: Outcome) -> None:
        with self._lock:
            summary.outcomes.append(outcome)
            summary.credits_spent += outcome.credits_spent
            if outcome.credits_remaining is not None:
                # Answers arrive out of order; the balance only falls during a run.
                previous = summary.credits_remaining
                summary.credits_remaining = outcome.credits_remaining if previous is None else min(
                    previous, outcome.credits_remaining)
            if self.max_credits is not None and summary.credits_spent >= self.max_credits:
                self.stop.set()
        self.reporter.update(outcome, summary)

    def _within_budget(self, summary: Summary, in_flight: int) -> bool:
        # Each request in flight may spend a credit: never start more than the budget has left.
        if self.max_credits is None:
            return True
        with self._lock:
            return summary.credits_spent + in_flight < self.max_credits

    def run(self, plan: Plan) -> Summary:
        summary = Summary(not_images=list(plan.not_images), dry_run=self.dry_run)
        started = time.perf_counter()
        todo: list[WorkItem] = []
        self.reporter.start(len(plan.items) + len(plan.invalid))
        for raw, reason in plan.invalid:
            missing = WorkItem(Path(raw), None, has_output=False)
            self._record(summary, Outcome(missing, "failed", reason))
        for item in plan.items:
            if item.dest is not None and item.dest.exists() and not self.overwrite:
                self._record(summary, Outcome(item, "skipped", "output exists"))
            elif self.dry_run:
                self._record(summary, Outcome(item, "would process"))
            else:
                todo.append(item)

        pending: dict[Future[Outcome], WorkItem] = {}
        queue = iter(todo)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bgremove")
        try:
            while True:
                try:
                    if self._take_interrupts(summary):
                        break
                    if self.stop.is_set():
                        # Queued work that has not started yet is dropped now, not waited for.
                        for future in [f for f in pending if f.cancel()]:
                            item = pending.pop(future)
                            self._record(summary, self._not_processed(item, summary))
                    # Keep a small, bounded number of items in flight.
                    while (not self.stop.is_set() and len(pending) < self.workers * 2
                           and self._within_budget(summary, len(pending))):
                        item = next(queue, None)
                        if item is None:
                            break
                        pending[pool.submit(self.process_one, item)] = item
                    if not pending:
                        break
                    done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = pending.pop(future)
                        try:
                            outcome = future.result()
                        except StopBatch as exc:
                            summary.stopped = summary.stopped or exc
                            self.stop.set()
                            outcome = Outcome(item, "not processed", str(exc))
                        self._record(summary, outcome)
                except KeyboardInterrupt:
                    # Without a signal handler (see interrupts.py) Ctrl-C arrives as an exception.
                    self.interrupt()
        finally:
            pool.shutdown(wait=not summary.abandoned, cancel_futures=True)
        if summary.abandoned:
            self._stop_writing()
            for future, item in pending.items():
                if item in self._written:  # finished writing just now: only returning is left
                    self._record(summary, future.result())
                else:
                    self._record(summary, Outcome(item, "not processed", ABANDONED))
        left = list(queue)
        for item in left:
            self._record(summary, self._not_processed(item, summary))
        budget_spent = self.max_credits is not None and not summary.interrupted
        if left and summary.stopped is None and budget_spent:
            summary.stopped = CreditLimitReached(
                f"spent the {self.max_credits} credits this run may use (--max-credits)")
        summary.seconds = time.perf_counter() - started
        self.reporter.finish(summary)
        return summary

    def _take_interrupts(self, summary: Summary) -> bool:
        """Note interrupts in the summary; say whether to abandon the work in flight."""
        if self._interrupts and not summary.interrupted:
            summary.interrupted = True
            self.stop.set()
            cancel = getattr(self.backend, "cancel", None)
            if cancel is not None:
                cancel()  # a request still waiting for a rate slot or a retry is not sent
        summary.abandoned = self._interrupts > 1
        return summary.abandoned

    @staticmethod
    def _not_processed(item: WorkItem, summary: Summary) -> Outcome:
        return Outcome(item, "not processed",
                       "interrupted" if summary.interrupted else "batch stopped")
