"""`--watch`: a hot folder. After the normal run, keep running and process every image that
appears or changes under the inputs, as the run would have (same outputs, stamps, reporters).

Events come from watchfiles (the OS's own notifications: inotify, FSEvents, ReadDirectoryChangesW;
it polls only where those do not work, or when WATCHFILES_FORCE_POLLING is set). An event says
that a file changed, not that its writer is done: a file is read only once its size and time have
stayed the same for SETTLE seconds, so a slow copy is never read half-way. Each settled set of
files is a small batch through the engine, narrowed from the run's own plan, so a file lands
where the run puts it, and its stamp keeps it from being made twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bgremove.errors import credit_limit
from bgremove.naming import STDIO, is_cutout_name
from bgremove.plan import Planner, WorkItem

if TYPE_CHECKING:
    from bgremove.backends import Session
    from bgremove.batch import Batch
    from bgremove.outcomes import Outcome, Progress, Summary

# How long a changed file must stay unchanged (size and modification time) before it is read.
# Copies and downloads write in bursts; half a second of quiet is long past a burst's gaps on a
# local disk, and keeps arrival-to-output latency under a second plus the image's own time.
SETTLE = 0.5
# How often the waiting files are looked at again when no event comes.
TICK_MS = 100
# Names of files still being written by common tools (browsers, rsync, editors, curl -o x.part).
TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp",
                      ".filepart", "~")


def ignored(name: str) -> bool:
    """A hidden file, one still being written under a temporary name, or bgremove's own."""
    return (name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)
            or is_cutout_name(name))


class Arrivals:
    """Files that changed, each handed out once it has settled (SETTLE seconds unchanged)."""

    def __init__(self, roots: list[Path], skip: list[Path], settle: float = SETTLE):
        self.roots = [Path(os.path.abspath(r)) for r in roots]
        self.skip = [Path(os.path.abspath(s)) for s in skip]
        self.settle = settle
        self.waiting: dict[str, tuple[tuple[int, int] | None, float]] = {}

    def wanted(self, path: str) -> bool:
        where = Path(path)
        if any(where == s or s in where.parents for s in self.skip):
            return False  # the output folder inside an input folder: our own writes
        for root in self.roots:
            if where == root:
                return not ignored(where.name)
            if root in where.parents:  # no hidden folder on the way, as the walk skips them
                return not any(ignored(part) if part == where.name else part.startswith(".")
                               for part in where.relative_to(root).parts)
        return False

    def note(self, path: str, now: float) -> None:
        if self.wanted(path):
            self.waiting[path] = (_signature(path), now)

    def settled(self, now: float) -> list[str]:
        """The files unchanged for the settle time, handed out once (and forgotten)."""
        ready = []
        for path, (seen, since) in list(self.waiting.items()):
            current = _signature(path)
            if current is None:  # gone (renamed away, deleted) or not a file
                del self.waiting[path]
            elif current != seen:
                self.waiting[path] = (current, now)
            elif now - since >= self.settle:
                del self.waiting[path]
                ready.append(path)
        return ready


def _signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return st.st_size, st.st_mtime_ns


class Narrowed:
    """The run's plan narrowed to the files that arrived: each lands where the whole run would
    put it (mirrored sub-folders, the same names for look-alike files). A `Plan`."""

    def __init__(self, planner: Planner, paths: list[str]):
        self.planner = planner
        self.paths = {os.path.abspath(p) for p in paths}

    @property
    def known_count(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[WorkItem]:
        left = set(self.paths)
        for item in self.planner:
            if item.source is not None and os.path.abspath(item.source) in left:
                left.discard(os.path.abspath(item.source))
                yield item
                if not left:
                    return


class Watch:
    """The handle that stops a watch: `stop()` (safe in a signal handler, as the command line's
    Ctrl-C and SIGTERM call it) ends the waiting and stops the batch in progress, whose files in
    flight are finished and written; a second `stop()` abandons them, as for a batch."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.current: list[Batch] = []  # the batch in progress

    def stop(self) -> None:
        self.stopped.set()
        for batch in list(self.current):
            batch.stop()


def follow(first: Batch, session: Session, summary: Summary, *, workers: int,
           on_progress: Progress, on_wait: Callable[[Summary], None] | None = None,
           watch: Watch | None = None) -> Summary:
    """Watch the inputs of the batch `first` (which has run) and process what arrives with
    `session` on `workers` threads, adding each outcome to `summary`, until `watch.stop()` (or
    a stop such as no more credits). Files in progress are finished and written.
    `on_wait(summary)` is called whenever the watch goes back to waiting."""
    import watchfiles

    watch = watch or Watch()
    stop, current = watch.stopped, watch.current

    planner = first.planner
    roots = [Path(raw) for raw in planner.inputs if raw != STDIO and Path(raw).exists()]
    # An output folder inside an input folder is not watched; one that is an input folder
    # (outputs in place, named `.cutout.`) is, and its outputs are ignored by their names.
    output = first.output_folder
    inside = output is not None and not any(_same(output, root) for root in roots)
    arrivals = Arrivals(roots, [output] if output is not None and inside else [])
    started = time.perf_counter() - summary.seconds

    def record(outcome: Outcome, _sub: Summary) -> None:
        summary.add(outcome)
        summary.found += 1
        on_progress(outcome, summary)

    if on_wait is not None:
        on_wait(summary)
    watcher = watchfiles.watch(*roots, watch_filter=None, debounce=TICK_MS, step=20,
                               rust_timeout=TICK_MS, yield_on_timeout=True,
                               stop_event=stop, raise_interrupt=False)
    for changes in watcher:
        now = time.monotonic()
        for change, path in changes:
            if change is not watchfiles.Change.deleted:
                arrivals.note(path, now)
        ready = arrivals.settled(now)
        if not ready or stop.is_set():
            continue
        budget = None
        if first.max_credits is not None:
            budget = first.max_credits - summary.credits_spent
            if budget <= 0:
                summary.stopped = credit_limit(first.max_credits)
                break
        batch = _batch_like(first, budget, Narrowed(planner, ready))
        current.append(batch)
        if stop.is_set():  # stopped between the check above and now: its stop() missed it
            batch.stop()
        sub = batch.run(session, workers=workers, on_progress=record)
        current.clear()
        summary.abandoned = summary.abandoned or sub.abandoned
        if sub.stopped is not None:
            summary.stopped = sub.stopped
            break
        if sub.abandoned:
            break
        if on_wait is not None and not stop.is_set():
            on_wait(summary)
    summary.walk_done = True
    summary.seconds = time.perf_counter() - started
    return summary


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _batch_like(first: Batch, budget: int | None, plan: Narrowed) -> Batch:
    """A batch with the first one's output and choices, running `plan`."""
    from bgremove.batch import Batch

    return Batch(first.planner.inputs, first.planner.output, options=first.options,
                 overwrite=first.overwrite, keep_unstamped=first.keep_unstamped,
                 max_credits=budget, model_id=first.model_id, plan=plan,
                 interchangeable=first.interchangeable)
