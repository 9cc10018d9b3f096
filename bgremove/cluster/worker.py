"""The worker side of `--cluster`: the model loaded once per worker process (`ModelPlugin`,
`worker_session`), and `run_chunk`, which processes one chunk of files there and answers for each.
`dask worker ... --preload bgremove.cluster` calls `dask_setup` as a worker starts."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed import Event, WorkerPlugin

from bgremove.atomic import is_part_of
from bgremove.errors import BgRemoveError, SetupError, StopBatch
from bgremove.executors import process_item
from bgremove.files import write_output
from bgremove.options import RemovalOptions
from bgremove.outcomes import Status
from bgremove.plan import WorkItem
from bgremove.stamps import Recipe, verdict

if TYPE_CHECKING:
    from bgremove.backends.local import LocalSession

# How often a running chunk asks the scheduler whether the job was stopped.
STOP_POLL = 0.5

# A worker's model by what it was loaded with: (model, device, threads, precision, model type).
SessionKey = tuple[str | None, str, int, str, str | None]
_sessions: dict[SessionKey, LocalSession] = {}
_sessions_lock = threading.Lock()


def worker_session(model: str | None, device: str, threads: int,
                   precision: str = "auto", model_type: str | None = None) -> LocalSession:
    """The model of this worker process, loaded once, shared by its threads and kept for the next
    job with the same settings (a job with other settings replaces it: one model per worker)."""
    key: SessionKey = (model, device, threads, precision, model_type)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            from bgremove.api import open_local

            for old in _sessions.values():
                old.close()
            _sessions.clear()
            # One image at a time per worker thread (the cluster's own sizing), `threads` each.
            session = _sessions[key] = open_local(model, device=device, workers=1,
                                                  threads=threads, precision=precision,
                                                  model_type=model_type)[0]
        return session


class ModelPlugin(WorkerPlugin):
    """Loads the job's model on every worker, those that join later and those Dask restarts
    included, before they take a task. Registered under one name, so a later job's settings
    replace an earlier job's."""

    name = "bgremove-model"

    def __init__(self, model: str | None, device: str, threads: int, local: bool = False,
                 resources: dict[str, float] | None = None, precision: str = "auto",
                 model_type: str | None = None):
        self.model, self.device, self.threads = model, device, threads
        self.precision, self.model_type = precision, model_type
        # Workers of a `local` cluster share the command's terminal: Ctrl-C there is meant for
        # the command (which stops the job cleanly), not for them.
        self.local = local
        self.resources = resources  # what the job's tasks ask for: other workers get none

    async def setup(self, worker: Any) -> None:
        if self.local and threading.current_thread() is threading.main_thread():
            # SIGTERM too, sent to the whole group (`kill -- -PGID`, a service manager): the
            # command stops the job and lets the chunks in flight finish and report. The
            # cluster still stops its workers (the nanny asks, then SIGKILLs).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.resources and not _offers(worker, self.resources):
            return
        loop = asyncio.get_running_loop()
        try:  # off the worker's event loop, which must keep answering the scheduler
            await loop.run_in_executor(None, worker_session, self.model, self.device,
                                       self.threads, self.precision, self.model_type)
        except BgRemoveError as exc:
            raise SetupError(f"Dask worker {worker.address}: ", *exc.parts) from None


def _offers(worker: Any, resources: dict[str, float]) -> bool:
    state = getattr(worker, "state", worker)  # where distributed keeps them has moved
    total = getattr(state, "total_resources", None) or {}
    return all(total.get(name, 0) >= amount for name, amount in resources.items())


def device_warning(model: str | None, device: str, threads: int,
                   precision: str = "auto", model_type: str | None = None) -> str | None:
    """What this worker's model says about its device (an accelerator asked for, the CPU used)."""
    session = _sessions.get((model, device, threads, precision, model_type))
    return session.device_warning if session is not None else None


def dask_setup(worker: Any) -> None:
    """`dask worker ... --preload bgremove.cluster`: import the local engine as the worker
    starts. The model itself is loaded by the command that runs a job (ModelPlugin), with that
    job's --model, --device and --threads."""
    import bgremove.backends.local  # noqa: F401


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one job needs besides its files."""

    token: str
    options: RemovalOptions
    model: str | None
    device: str
    threads: int
    overwrite: bool
    started_ns: int  # the job's start, as the output folder's filesystem tells time (ns)
    recipe: Recipe | None = None  # what the outputs' stamps say they are made from
    precision: str = "auto"  # as asked: each worker resolves `auto` for itself (precision.py)
    model_type: str | None = None  # a model file's architecture, if named (models/architectures)

    @property
    def stop_event(self) -> str:
        return self.stop_event_of(self.token)

    @staticmethod
    def stop_event_of(token: str) -> str:
        """The name of the Dask Event that stops the job `token`."""
        return f"bgremove-stop-{token}"


# One file's result, light to send back: (status, error, bytes, ms), the error as the object it
# is (it pickles with its parts and fields: the command line says it with its flags, and a
# FileFailed keeps its detail); None: not processed (the job was stopped); a StopBatch: nothing
# more can succeed (a full disk).
Done = tuple[str, BgRemoveError | None, int, float]
Answer = Done | StopBatch | None


def run_chunk(job: ChunkJob, files: list[tuple[str, str, bool]]) -> list[Answer]:
    """Process one chunk, `(source, output, walked)` each, on a worker: an answer per file."""
    try:
        session = worker_session(job.model, job.device, job.threads, job.precision,
                                 job.model_type)
    except BgRemoveError as exc:
        raise SetupError("Dask worker: ", *exc.parts) from None
    remove_leftovers(Path(dest) for _, dest, _ in files)
    stopped = _StopFlag(job.stop_event)
    answers: list[Answer] = []
    for source, dest, walked in files:
        if stopped():
            break
        item = WorkItem(Path(source), Path(dest), walked=walked)
        earlier = written_earlier(Path(source), Path(dest), job)
        if earlier is not None:
            answers.append(earlier)
            continue
        try:
            outcome = process_item(session, job.options, item, _write, _recipe(job, session))
        except StopBatch as exc:
            answers.append(exc)
            break
        answers.append((outcome.status.value, outcome.failure, outcome.bytes, outcome.ms))
    return answers + [None] * (len(files) - len(answers))


def _recipe(job: ChunkJob, session: LocalSession) -> Recipe | None:
    """The job's recipe, naming the model this worker runs: under `--precision auto` each worker
    picks its own build (bgremove/precision.py), and a stamp says which one made the output."""
    if job.recipe is None or job.recipe.model == session.model_id:
        return job.recipe
    return replace(job.recipe, model=session.model_id,
                   also=tuple(m for m in (job.recipe.model, *job.recipe.also)
                              if m != session.model_id))


def _write(item: WorkItem, data: bytes) -> bool:
    write_output(item, data)
    return True


def written_earlier(source: Path, dest: Path, job: ChunkJob) -> Done | None:
    """The answer for an output that exists already, or None to make it. One written since the
    job began was written by this job, on a worker that died before answering: done, once."""
    try:
        st = os.stat(dest)
    except OSError:
        return None
    if st.st_mtime_ns >= job.started_ns:
        return (Status.done.value, None, st.st_size, 0.0)
    if not job.overwrite and job.recipe is not None and verdict(source, dest, job.recipe).fresh:
        return (Status.skipped.value, None, 0, 0.0)  # made since the plan saw it stale
    return None


def remove_leftovers(outputs: Iterator[Path]) -> None:
    """Remove the temporary files (`.NAME.XXXXXXXX.part`) that a killed run or worker left for
    these outputs: one listing of each folder per chunk, not one per file."""
    by_folder: dict[Path, set[str]] = {}
    for dest in outputs:
        by_folder.setdefault(dest.parent, set()).add(dest.name)
    for folder, names in by_folder.items():
        try:
            with os.scandir(folder) as scan:
                leftovers = [e.name for e in scan if is_part_of(e.name, names)]
        except OSError:
            continue
        for leftover in leftovers:
            try:
                os.unlink(folder / leftover)
            except OSError:
                pass


class _StopFlag:
    """Whether the job was stopped, asked of the scheduler at most every STOP_POLL seconds."""

    def __init__(self, name: str):
        self.event = Event(name)
        self.next_check = 0.0
        self.stopped = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.stopped and now >= self.next_check:
            self.stopped = self.event.is_set()
            self.next_check = now + STOP_POLL
        return self.stopped
