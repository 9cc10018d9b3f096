"""The batch: stream work items through a session on an executor, write atomically.

The planner is pulled as work is taken, a bounded number of items is in flight, and the summary
keeps counters and a bounded list of failures: memory does not grow with the batch, and the first
image starts before the walk is over.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bgremove import stamps
from bgremove.errors import (
    FileFailed,
    NotAnImage,
    Option,
    StopBatch,
    UsageError,
    credit_limit,
)
from bgremove.executors import BatchJob, Executor, Threads, WriteGate
from bgremove.files import check_header, check_writable
from bgremove.naming import output_is_file, output_suffix
from bgremove.options import OutputFormat, RemovalOptions
from bgremove.outcomes import Outcome, Progress, Status, Summary
from bgremove.plan import Plan, Planner, Shard, WorkItem

if TYPE_CHECKING:
    from bgremove.backends import Session


class Batch:
    """A batch: files and folders in, cut-outs written atomically under `output`.

    Made from what a user names: `inputs` (files, folders, `-` for stdin), `output` (a folder, or
    a file for one input, or `-`/None for stdout), `listed` (more paths, e.g. read from a file,
    consumed as they are needed; each lands under `output` at its path as written), `shard` (only
    that part of the set). A request that cannot work is refused here (UsageError), before
    anything is loaded. `run(session)` processes it; `dry_run` says what would be done, without a
    session; `check` is a dry run whose summary is `failed` when an output is missing or stale;
    `max_credits` caps the credits spent on a remote session; `remote`: the batch is for a remote
    session, so a dry run refuses what the API would refuse too. `plan`: the work items, instead
    of those the inputs make (they still say where outputs go): the watch (watch.py) runs the
    first run's plan narrowed to the files that arrived.

    Outputs that are up to date are kept (stamps.py: made from this input's content, with these
    options, by this model); the rest are made, all of them with `overwrite`. An output with no
    stamp is made again unless `keep_unstamped`. The stamps name the session's model; without one
    (a dry run) `model_id` (`stamps.local_model_id`, `stamps.remote_model_id`; default: the
    bundled model's), and outputs stamped by the models in `interchangeable` count as up to date
    too (the bundled model's two builds under `--precision auto`). `prune`: after a run that went
    through without a failure, remove the stamped outputs in the output folder that no input of
    the run made (their input is gone); a dry run lists them.

    Stopping: `stop()` (safe in a signal handler, as for Ctrl-C or SIGTERM) stops taking new work;
    work in flight finishes and is written whole, so the next run starts exactly where this one
    stopped. A second `stop()` abandons the work in flight: nothing more is written and `run`
    returns at once (its worker threads may still be computing; see `Summary.abandoned`).
    """

    def __init__(
        self,
        inputs: Iterable[str | os.PathLike[str]] = (),
        output: str | os.PathLike[str] | None = None,
        *,
        options: RemovalOptions | None = None,
        listed: Iterable[str] | None = None,
        shard: Shard | None = None,
        overwrite: bool = False,
        keep_unstamped: bool = False,
        dry_run: bool = False,
        check: bool = False,
        max_credits: int | None = None,
        model_id: str | None = None,
        prune: bool = False,
        remote: bool = False,
        plan: Plan | None = None,
        interchangeable: Iterable[str] = (),
    ):
        out = os.fspath(output) if output is not None else None
        if isinstance(inputs, (str, os.PathLike)):  # one folder, not its name's letters
            inputs = [inputs]
        named = [os.fspath(p) for p in inputs]
        if options is None:  # `out.jpg` for one input: its extension picks the format
            implied = (OutputFormat.from_suffix(output_suffix(out))
                       if listed is None and output_is_file(out, named) else None)
            options = RemovalOptions.build(output_format=implied)
        self.options = options
        self.planner = Planner(named, out, self.options.output_format,
                               listed=listed, shard=shard)
        self.plan: Plan = plan if plan is not None else self.planner  # what is run
        # The folder the outputs go into; None for one output file (or stdout).
        self.output_folder = (None if self.planner.to_file or out is None else Path(out))
        if prune and (self.output_folder is None or listed is not None or shard is not None):
            raise UsageError(Option("prune"), " needs every input of the output folder: name its "
                             "folders, not a list (", Option("files_from"), "), a part (",
                             Option("shard"), ") or one output file")
        self.prune = prune
        self._ours: set[str] = set()  # with prune: this run's inputs and outputs, never pruned
        self.overwrite = overwrite
        self.keep_unstamped = keep_unstamped
        self.dry_run = dry_run or check
        self.max_credits = max_credits
        self.remote = remote
        self.model_id = model_id
        self.interchangeable = tuple(interchangeable)  # with model_id (stamps.Recipe.also)
        self.recipe: stamps.Recipe | None = None  # settled by run(), from the model it runs
        self.session: Session | None = None
        self.on_progress: Progress | None = None
        self.workers = 1
        self._stops = 0  # counted, not signalled: bumped in a signal handler, polled by run()
        self.stopping = threading.Event()
        self.summary = Summary(dry_run=self.dry_run, check=check)
        self.gate = WriteGate()  # every output is written through it; closed on a second stop

    @property
    def known_count(self) -> int | None:
        """How many inputs there are, when known before the walk (files named one by one)."""
        return self.plan.known_count

    def stop(self) -> None:
        """Stop the batch; called twice, abandon the work in flight. Safe in a signal handler."""
        self._stops += 1

    @property
    def stops(self) -> int:
        return self._stops

    # -- the run, on the calling thread ----------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        summary = self.summary
        summary.add(outcome)
        if self.max_credits is not None and summary.credits_spent >= self.max_credits:
            self.stopping.set()
        if self.on_progress is not None:
            self.on_progress(outcome, summary)

    def _within_budget(self, in_flight: int) -> bool:
        # Each request in flight may spend a credit: never start more than the budget has left.
        return self.max_credits is None or self.summary.credits_spent + in_flight < self.max_credits

    def _triage(self, item: WorkItem) -> tuple[WorkItem, Outcome | None]:
        """The item with the reason it is made or kept, and its outcome if it needs no worker
        (None: process it)."""
        if item.error is not None:
            return item, Outcome(item, Status.failed, failure=item.error)
        if item.dest is not None:
            if self.overwrite:
                reason = stamps.OVERWRITE if item.dest.exists() else stamps.NEW
            else:
                assert self.recipe is not None  # settled by run() before the first item
                verdict = stamps.verdict(item.source, item.dest, self.recipe,
                                         keep_unstamped=self.keep_unstamped)
                if verdict.fresh:
                    item = replace(item, reason=verdict.reason)
                    return item, Outcome(item, Status.skipped)
                reason = verdict.reason
            item = replace(item, reason=reason)
        if self.dry_run:
            # What the run would find from the header alone, in the words it would say it with.
            try:
                check_header(item, self.options.max_size, remote=self.remote)
            except NotAnImage as exc:
                if item.skip_if_not_image:
                    return item, Outcome(item, Status.not_image)
                return item, Outcome(item, Status.failed, failure=exc)
            except FileFailed as exc:
                return item, Outcome(item, Status.failed, failure=exc)
            return item, Outcome(item, Status.would_process)
        return item, None

    def run(self, session: Session | None = None, *, workers: int | None = None,
            on_progress: Progress | None = None, count_ahead: bool = False,
            executor: Executor | None = None) -> Summary:
        """Process the batch with `session` on `workers` threads (default: sized for this machine
        and the session); `on_progress(outcome, summary)` is called on this thread after each
        input. `count_ahead` walks the inputs once more on another thread, only to count them,
        so a progress bar knows its total before the work is done. `executor`: process the
        images elsewhere instead (a `bgremove.cluster.DaskExecutor`; then no session here)."""
        if session is None and executor is None and not (self.dry_run or self._stops):
            raise ValueError("a batch needs a session, unless it is a dry run (or stopped)")
        self.session = session
        self.on_progress = on_progress
        executor = self._start(session, executor, workers)
        if count_ahead:
            threading.Thread(target=self._count, daemon=True, name="bgremove-count").start()
        summary = self.summary
        started = time.perf_counter()
        items = iter(self.plan)
        pending: dict[Future[Outcome], WorkItem] = {}
        exhausted = False
        try:
            exhausted = self._loop(items, pending, executor)
        except StopBatch as exc:  # the output folder cannot be written
            summary.stopped = exc
        finally:
            executor.shutdown(abandon=summary.abandoned)
        if summary.abandoned:
            for outcome in executor.abandon(pending):
                self._record(outcome)
        if not exhausted:
            exhausted = self._name_the_rest(items)
        summary.walk_done = exhausted or summary.walk_done
        if self.prune:
            self._prune(exhausted)
        summary.seconds = time.perf_counter() - started
        return summary

    def _start(self, session: Session | None, executor: Executor | None,
               workers: int | None) -> Executor:
        """Settle the recipe the outputs are stamped with, size the executor (this process's
        threads, unless one is given) and start it with the run's job."""
        self.recipe = stamps.Recipe.of(self.options, *self._model_ids(session, executor))
        if executor is None:
            from bgremove.parallel import workers_for

            self.workers = workers or workers_for(session, images=self.known_count,
                                                  mode=self.options.mode.value)
            executor = Threads(self.workers)
        else:
            self.workers = executor.workers
        executor.start(BatchJob(session, self.options, self.recipe, self.overwrite,
                                self.output_folder, self.gate))
        return executor

    def _loop(self, items: Iterator[WorkItem], pending: dict[Future[Outcome], WorkItem],
              executor: Executor) -> bool:
        """Feed the executor and record what it finishes until the plan is over (True), the
        batch stops, or a second stop abandons the work in flight (False)."""
        if self.output_folder is not None and not self.dry_run:
            check_writable(self.output_folder)
        exhausted = False
        while True:
            try:
                if self._take_stops():
                    return exhausted
                if self.stopping.is_set():
                    self._drop_queued(pending, executor)
                exhausted = self._feed(items, pending, executor) or exhausted
                executor.flush()
                if not pending:
                    if exhausted or self.stopping.is_set():
                        return exhausted
                    continue
                self._settle(pending, timeout=0.2)
            except KeyboardInterrupt:
                # Without a signal handler (see interrupts.py) Ctrl-C arrives as an exception.
                self.stop()

    def _drop_queued(self, pending: dict[Future[Outcome], WorkItem],
                     executor: Executor) -> None:
        """Stopping: queued work that has not started yet is dropped now, not waited for."""
        executor.stop()
        for future in [f for f in pending if f.cancel()]:
            self._record(self.not_processed(pending.pop(future)))

    def _settle(self, pending: dict[Future[Outcome], WorkItem], timeout: float) -> None:
        """Record the work that finishes within `timeout` seconds (at least one, if any does)."""
        summary = self.summary
        done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            item = pending.pop(future)
            try:
                outcome = future.result()
            except StopBatch as exc:
                summary.stopped = summary.stopped or exc
                self.stopping.set()
                outcome = Outcome(item, Status.not_processed, failure=exc)
            if outcome.status is Status.not_processed and outcome.error is None:
                outcome = self.not_processed(outcome.item)  # an executor's, in our words
            self.gate.recorded(item)
            self._record(outcome)

    def _name_the_rest(self, items: Iterator[WorkItem]) -> bool:
        """Name what is left, so the user knows what the next run will do: all of it when the
        API, the setup or the credit budget stopped the batch; after Ctrl-C, what a second of
        walking finds (the user wants out, not a walk of a million files). Say whether the plan
        is over."""
        summary = self.summary
        deadline = time.monotonic() + (1.0 if summary.interrupted else math.inf)
        left = 0
        exhausted = False
        for item in items:
            left += 1
            summary.found += 1
            self._record(self.not_processed(item))
            if time.monotonic() > deadline:
                break
        else:
            exhausted = True
        if left and summary.stopped is None and not summary.interrupted and (
                self.max_credits is not None):
            summary.stopped = credit_limit(self.max_credits)
        return exhausted

    def _prune(self, exhausted: bool) -> None:
        """Remove (list, in a dry run) the stamped outputs that no input of this run made. Only
        after a whole run with no failure: an input that failed, or a folder that could not be
        read, may still own an output."""
        summary = self.summary
        if not exhausted or summary.interrupted or summary.stopped or summary.count(
                Status.failed):
            summary.prune_skipped = "not pruned: the run did not go through without a failure"
            return
        assert self.output_folder is not None  # prune needs one: refused in __init__ if not
        for path in stamps.orphans(self.output_folder, self._ours):
            item = WorkItem(None, path, reason=stamps.INPUT_GONE)
            if self.dry_run:
                self._record(Outcome(item, Status.would_prune))
                continue
            try:
                path.unlink()
            except OSError as exc:  # named as the file it is, not an output still wanted
                failure = FileFailed(f"cannot remove it: {exc.strerror or exc}", path=path)
                self._record(Outcome(WorkItem(path, None), Status.failed, failure=failure))
            else:
                self._record(Outcome(item, Status.pruned))

    def _model_ids(self, session: Session | None,
                   executor: Executor | None) -> tuple[str, tuple[str, ...]]:
        """The model the stamps name, and the others whose outputs count as its own
        (stamps.Recipe.also): the session's or the executor's, which know what they loaded
        (the fp32 model, when the int8 build failed its check); else the ones given; else, for
        a dry run, what a default session would load."""
        for runner in (session, executor):
            named: str | None = getattr(runner, "model_id", None)  # a DaskExecutor has one
            if named:
                return named, tuple(getattr(runner, "interchangeable", ()))
        if self.model_id is not None:
            return self.model_id, self.interchangeable
        from bgremove.precision import interchangeable, model_file

        return (stamps.local_model_id(model_file(None, "auto")),
                tuple(stamps.local_model_id(m) for m in interchangeable(None, "auto")))

    def _count(self) -> None:
        """Count the inputs on a second walk (for the progress bar's total)."""
        if self.planner.listed is not None or self.plan is not self.planner:
            return  # a list may be stdin, which can be read only once; a plan given is not ours
        found = 0
        for _ in Planner(self.planner.inputs, self.planner.output, self.options.output_format,
                         shard=self.planner.shard):
            found += 1
            if self.summary.walk_done:
                return
        self.summary.counted = found

    def _feed(self, items: Iterator[WorkItem], pending: dict[Future[Outcome], WorkItem],
              executor: Executor) -> bool:
        """Take items from the plan until enough are in flight; say whether the plan is over.

        Items that need no worker (skipped, failed before starting) are recorded here. Every few
        hundred, control goes back to the loop, so finished work is recorded (and the progress
        bar moves) while a resumed run walks past thousands of finished outputs.
        """
        summary = self.summary
        deadline = time.monotonic() + 0.1
        while (not self.stopping.is_set() and len(pending) < executor.capacity
               and self._within_budget(len(pending))):
            if time.monotonic() > deadline or self._stops:
                return False
            item = next(items, None)
            if item is None:
                summary.walk_done = True
                return True
            summary.found += 1
            item, outcome = self._triage(item)
            if self.prune:
                self._ours.update(os.path.abspath(p) for p in (item.source, item.dest) if p)
            if outcome is None:
                pending[executor.submit(item)] = item
            else:
                self._record(outcome)
        return False

    def _take_stops(self) -> bool:
        """Note stops in the summary; say whether to abandon the work in flight."""
        summary = self.summary
        if self._stops and not summary.interrupted:
            summary.interrupted = True
            self.stopping.set()
            if self.session is not None:
                self.session.cancel()  # a request waiting for a rate slot or a retry is not sent
        summary.abandoned = self._stops > 1
        return summary.abandoned

    def not_processed(self, item: WorkItem) -> Outcome:
        return Outcome(item, Status.not_processed,
                       "interrupted" if self.summary.interrupted else "batch stopped")
