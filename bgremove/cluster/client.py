"""The client side of `--cluster`: connecting to (or starting) a Dask cluster, and
`DaskExecutor`, which sends a batch's items to its workers in chunks and settles their outcomes
from the answers."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed import Client, Event, LocalCluster
from distributed.scheduler import KilledWorker

from bgremove.atomic import create_part
from bgremove.cluster.worker import (
    ChunkJob,
    ModelPlugin,
    device_warning,
    run_chunk,
    written_earlier,
)
from bgremove.errors import FileFailed, Option, SetupError, StopBatch, UsageError
from bgremove.executors import ABANDONED
from bgremove.outcomes import Outcome, Status
from bgremove.plan import WorkItem
from bgremove.precision import Precision, choose, stamp_models
from bgremove.stamps import UP_TO_DATE

if TYPE_CHECKING:
    from bgremove.executors import BatchJob

# Files per Dask task. A task costs scheduler time and state, little against an image but not
# nothing at millions of them; dozens per task make that negligible while a dead worker still
# costs only a chunk's re-run, and progress still moves often (BENCHMARKS.md, "Dask").
CHUNK = 32
# Fewer files than fill the window are shared out over it, down to this many per chunk.
MIN_SPLIT = 4
# Chunks in flight per worker thread: one running, one queued, so no thread waits for the next.
WINDOW = 2
# How long to wait for a first worker when the scheduler has none.
WAIT_FOR_WORKERS = 30.0
# Devices that are a GPU: their tasks ask the workers for the Dask resource `GPU`.
GPU_DEVICES = {"cuda", "tensorrt", "rocm", "migraphx", "directml"}


@dataclass
class Cluster:
    """A client of a Dask cluster; `local` when this command started the cluster itself (then it
    ends with the command)."""

    client: Client
    local: LocalCluster | None = None
    spec: str = ""
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.client.close()
        finally:
            if self.local is not None:
                self.local.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(spec: str, *, local_workers: int | None = None) -> Cluster:
    """Connect to the cluster `spec` names: `local` or `local:N` (start N worker processes here,
    one thread each; `local`: `local_workers` of them, default one per usable core), a scheduler's
    address (`tcp://HOST:8786`), or a scheduler file (`scheduler.json`)."""
    kind, _, count = spec.partition(":")
    if kind == "local":
        from bgremove.parallel import usable_cores

        workers = int(count) if count else (local_workers or usable_cores())
        local = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
            # The batch sizes its own memory use (bgremove.parallel); a limit per worker would
            # have Dask pause or restart a worker in the middle of a large photo.
            memory_limit=0)
        return Cluster(Client(local, set_as_default=False), local, spec)
    try:
        if spec.endswith(".json"):
            if not Path(spec).is_file():
                raise SetupError(Option("cluster"), f" {spec}: no such scheduler file")
            client = Client(scheduler_file=spec, set_as_default=False)
        else:
            client = Client(spec, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SetupError(f"cannot reach the Dask scheduler at {spec}: {exc}") from None
    cluster = Cluster(client, None, spec)
    try:
        client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
    except (OSError, TimeoutError):
        cluster.close()
        raise SetupError(f"the Dask scheduler at {spec} has no workers (waited "
                         f"{WAIT_FOR_WORKERS:g} s): start some with `dask worker {spec}`") from None
    return cluster


def wants_gpu(device: str) -> bool:
    return device.partition(":")[0].lower() in GPU_DEVICES


class DaskExecutor:
    """Runs a batch's images on a Dask cluster, for `Batch.run(executor=...)`.

    `model`, `device`, `threads`: the session each worker loads (once per worker process),
    loaded here, before the run. `chunk_size`: files per task. With a GPU `device` on a cluster
    not started here, tasks ask for the Dask resource `GPU=1`: start GPU workers with
    `--resources GPU=1`. The run's options, recipe and output folder come with its BatchJob
    (`start`).
    """

    def __init__(self, cluster: Cluster, *, model: str | None = None,
                 device: str = "auto", threads: int | None = None, chunk_size: int = CHUNK,
                 precision: str = "auto", model_type: str | None = None):
        self.cluster = cluster
        self.client = cluster.client
        self.chunk_size = chunk_size
        self.resources: dict[str, float] | None = (
            {"GPU": 1} if wants_gpu(device) and cluster.local is None else None)
        if model is not None and (model.endswith(".onnx") or "/" in model or os.sep in model):
            model = os.path.abspath(os.path.expanduser(model))  # the workers' folder is not ours
        self.token = secrets.token_hex(6)
        # Sized by _refresh(), from the workers the scheduler knows.
        self.workers = self.window = self.capacity = 0
        self._next_refresh = 0.0
        self.threads = threads or 1  # each worker thread's inference threads
        # `auto` is resolved by each worker for its own CPU (issue 34), and its stamps name the
        # build it runs; here a precision that cannot work is refused before any worker loads,
        # and the plan's stamps take either build of the bundled model under `auto`.
        choose(precision, model, on_cpu=not wants_gpu(device))
        self.model, self.device, self.precision = model, device, Precision(precision).value
        self.model_type = model_type
        self.job: ChunkJob | None = None  # the run's, from start()
        self.output_folder: Path | None = None
        self.model_id, self.interchangeable = stamp_models(model, precision, device, model_type)
        self._refresh(force=True)
        if self.workers == 0:
            raise SetupError("no worker of the Dask cluster advertises the resource GPU: start "
                             "GPU workers with `dask worker ... --resources GPU=1`, or pick "
                             "another ", Option("device"))
        # Returns once every worker has loaded the model (or raises the first one's error).
        self.client.register_plugin(ModelPlugin(model, device, threads or 1,
                                                local=cluster.local is not None,
                                                resources=self.resources, precision=precision,
                                                model_type=model_type))
        said = self.client.run(device_warning, model, device, threads or 1, precision,
                               model_type)
        self.warnings = sorted({warning for warning in said.values() if warning})
        self.stop_event = Event(ChunkJob.stop_event_of(self.token), client=self.client)
        self._held: list[tuple[WorkItem, Future[Outcome]]] = []
        self._chunks: dict[Any, list[tuple[WorkItem, Future[Outcome]]]] = {}
        self._lock = threading.Lock()
        self._sent = 0
        self._stopping = False

    # -- sizing -----------------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        """Size the window for the workers there are now (workers join and leave)."""
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + 10.0
        workers = self.client.scheduler_info().get("workers", {}).values()
        if self.resources is None:
            slots = sum(w.get("nthreads", 1) for w in workers)
        else:
            slots = int(sum(w.get("resources", {}).get("GPU", 0) for w in workers))
        self.workers = slots
        self.window = WINDOW * max(1, slots)
        self.capacity = self.window * self.chunk_size

    # -- the Executor protocol --------------------------------------------------------------------

    def start(self, job: BatchJob) -> None:
        if job.output_folder is None:
            raise UsageError(Option("cluster"), " writes into an output folder (",
                             Option("output", "FOLDER"), "), not one file")
        self.output_folder = job.output_folder
        self.job = ChunkJob(self.token, job.options, self.model, self.device, self.threads,
                            job.overwrite, started_ns=0, recipe=job.recipe,
                            precision=self.precision, model_type=self.model_type)

    def submit(self, item: WorkItem) -> Future[Outcome]:
        if item.source is None or item.dest is None:
            raise UsageError(Option("cluster"), " sends files to Dask workers: not stdin or stdout")
        future: Future[Outcome] = Future()
        self._held.append((item, future))  # sent by flush(), which sees how many there are
        return future

    def flush(self) -> None:
        """Send what is held, in as many chunks as the window has room for: full ones while the
        plan keeps up, and smaller ones, shared out over the room, when fewer items are held
        (a small batch, a slow walk), so that every worker has its share."""
        self._refresh()
        with self._lock:
            room = self.window - len(self._chunks)
        while self._held and room > 0:
            size = min(self.chunk_size, max(MIN_SPLIT, -(-len(self._held) // room)))
            self._send(size)
            room -= 1

    def stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            self.stop_event.set()

    def shutdown(self, abandon: bool) -> None:
        with self._lock:
            chunks, self._chunks = self._chunks, {}
        if chunks:  # only after a second stop, or an error: nobody waits for these answers
            self.stop_event.set()
            self.client.cancel(list(chunks))
            if abandon and self.cluster.local is not None:
                self.cluster.close()  # its workers stop here: what is on disk now is final
                return
        # A cleared event is forgotten by the scheduler. A scheduler that is gone forgets it too.
        with suppress(OSError, TimeoutError):
            self.stop_event.clear()

    def abandon(self, pending: dict[Future[Outcome], WorkItem]) -> Iterator[Outcome]:
        """Chunks answer when they end: what their files became is read from the disk. (A
        worker of a cluster not started here may still finish the image it is on.)"""
        for future, item in pending.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                yield future.result()
                continue
            assert item.source is not None and item.dest is not None  # refused by submit()
            job = self.job
            written = (written_earlier(item.source, item.dest, job)
                       if job is not None and job.started_ns else None)
            if written is not None and written[0] == Status.done.value:
                yield Outcome(item, Status.done, bytes=written[2])
            else:
                yield Outcome(item, Status.not_processed, ABANDONED)

    # -- chunks -----------------------------------------------------------------------------------

    def _send(self, size: int) -> None:
        taken, self._held = self._held[:size], self._held[size:]
        chunk = [(item, f) for item, f in taken if f.set_running_or_notify_cancel()]
        if chunk:
            self._submit(chunk)

    def _submit(self, chunk: list[tuple[WorkItem, Future[Outcome]]]) -> None:
        assert self.job is not None and self.output_folder is not None, "start() comes first"
        if not self.job.started_ns:  # taken once the batch has checked the output folder
            self.job = replace(self.job, started_ns=filesystem_now(self.output_folder))
        files = []
        for item, _ in chunk:
            assert item.source is not None and item.dest is not None  # refused by submit()
            files.append((os.path.abspath(item.source), os.path.abspath(item.dest), item.walked))
        with self._lock:  # also called on Dask's callback thread (a chunk split up)
            self._sent += 1
            key = f"bgremove-chunk-{self.token}-{self._sent}"
        task = self.client.submit(run_chunk, self.job, files, pure=False, key=key,
                                  resources=self.resources)
        with self._lock:
            self._chunks[task] = chunk
        task.add_done_callback(self._answered)

    def _answered(self, task: Any) -> None:
        """On Dask's callback thread: settle the chunk's futures from its answers."""
        with self._lock:
            chunk = self._chunks.pop(task, None)
        if chunk is None:  # cancelled by shutdown
            return
        try:
            answers = task.result()
        except KilledWorker:
            if len(chunk) > 1:
                # One of its files may be what kills the workers: try each alone.
                for one in chunk:
                    self._submit([one])
                return
            item, future = chunk[0]
            died = FileFailed("its Dask worker died each time it was processed (out of memory, "
                              "or a crash)", path=item.source)
            future.set_result(Outcome(item, Status.failed, failure=died))
            return
        except CancelledError:
            error = SetupError("the Dask cluster dropped this job's work (scheduler lost?)")
            for _, future in chunk:
                future.set_exception(error)
            return
        except BaseException as exc:  # StopBatch from a worker, or a bug: as the local engine
            for _, future in chunk:
                future.set_exception(exc)
            return
        for (item, future), answer in zip(chunk, answers, strict=True):
            if answer is None:  # the job was stopped first: the batch says why
                future.set_result(Outcome(item, Status.not_processed))
            elif isinstance(answer, StopBatch):
                future.set_exception(answer)
            else:
                status, error, size, ms = answer
                if status == Status.skipped.value:  # made up to date by someone else meanwhile
                    item = replace(item, reason=UP_TO_DATE)
                future.set_result(Outcome(item, Status(status), bytes=size, ms=ms,
                                          failure=error))


def filesystem_now(folder: Path) -> int:
    """The time now on the filesystem of `folder` (ns): the modification time of a file written
    there. The workers' outputs are compared with it, so no clock of any machine matters. Until
    the first output makes `folder`, the nearest folder above it stands in: it holds it."""
    folder = next((f for f in (folder, *folder.parents) if f.is_dir()), folder)
    try:
        fd, probe = create_part(folder / "bgremove-start", mode=0o600)
    except OSError as exc:
        raise SetupError(f"cannot write to the output folder {folder}: "
                         f"{exc.strerror or exc}") from None
    try:
        os.write(fd, b"0")  # a write sets the time (an exclusive create on NFS may not)
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
