"""How many images to work on at once, and how many threads each inference gets, for this machine.

Measured (BENCHMARKS.md): on the CPU, one onnxruntime thread per image and as many images in
flight as there are cores beats fewer images with more threads each, on 2 cores as on 16 (16 x 1
did 1.7x the images of 4 x 4 there). One thread per inference needs no synchronisation inside the
model, and while one worker decodes or encodes (Pillow and numpy release the GIL) the others keep
their cores busy with the model. With the model on a GPU, the CPU's share is decoding, resizing
and encoding: half the cores as workers did best (8 of 16), more contend for the GIL. Memory
caps the count too: each image in flight holds its own buffers (IMAGE_BYTES).

This module is imported before any work starts: it must stay free of heavy imports.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgremove.backends import Session

# Remote work waits on the network, not the CPU; the API's rate limit is the real bound.
REMOTE_WORKERS = 8  # enough to keep the cap busy with ~0.25 s answers (benchmarks/remote_rate.py)
# Peak memory one image in flight adds, at the API's largest photo (4000x4000), by mode (the
# docs/performance.md; the loaded model is counted once, apart).
IMAGE_BYTES = {"fast": 350 << 20, "balanced": 350 << 20, "quality": 1000 << 20}
# Leave this share of the available memory to everything else.
MEMORY_SHARE = 0.8


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup (a container's `--cpus`), in cores, if any: the
    smallest quota on the way from its cgroup up to the root (v2), or its cpu controller's (v1)."""
    candidates = []
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one hierarchy
            base = root / path.lstrip("/")
            candidates += [folder / "cpu.max" for folder in (base, *base.parents)
                           if folder.is_relative_to(root)]
        elif "cpu" in controllers.split(","):  # cgroup v1
            for mount in (root / "cpu", root / "cpu,cpuacct"):
                candidates.append(mount / path.lstrip("/") / "cpu.cfs_quota_us")
                candidates.append(mount / "cpu.cfs_quota_us")
    limits = []
    for file in candidates:
        try:
            text = file.read_text().split()
            if file.name == "cpu.max":
                quota, period = text[0], text[1]
            else:
                quota = text[0]
                period = (file.parent / "cpu.cfs_period_us").read_text().split()[0]
        except (OSError, IndexError):
            continue
        if quota not in ("max", "-1") and int(period) > 0:
            limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (`taskset`, cpusets), and the CPU quota
    of its cgroup (a container's `--cpus`), whichever is smaller."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the system's available memory, or its cgroup's
    limit (a container's `--memory`) less what the cgroup uses, whichever is smaller."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                folder = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                limit = (folder / "memory.max").read_text().strip()
                if limit != "max":
                    used = int((folder / "memory.current").read_text().strip())
                    found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def plan(workers: int | None, threads: int | None, *, remote: bool = False,
         accelerator: bool = False, mode: str = "balanced", images: int | None = None,
         cores: int | None = None, memory: int | None = -1) -> tuple[int, int]:
    """(workers, onnxruntime threads per inference): what was asked for, the rest for the machine.

    `images`: how many there are, when known (a few files named on the command line): never
    more workers than images, so a single photo gets every core for its inference.
    `accelerator`: the model runs on a GPU. `memory`: bytes available (-1: read them from the
    system; None: unknown).
    """
    cores = cores or usable_cores()
    if remote:
        return workers or REMOTE_WORKERS, threads or 1
    if workers is None:
        if accelerator:
            workers = max(2, cores // 2)
        elif threads is not None:
            workers = max(1, cores // threads)
        else:
            workers = cores
        memory = available_memory() if memory == -1 else memory
        if memory is not None:
            fits = int(memory * MEMORY_SHARE) // IMAGE_BYTES.get(mode, IMAGE_BYTES["quality"])
            workers = max(1, min(workers, fits))
        if images is not None:
            workers = max(1, min(workers, images))
    if threads is None:
        threads = 1 if accelerator else max(1, cores // workers)
    return workers, threads


def plan_local(workers: int | None, threads: int | None, *, device: str = "auto",
               mode: str = "balanced", images: int | None = None, cores: int | None = None,
               ) -> tuple[int, int]:
    """`plan` for the model on this machine, on `device`: whether it is an accelerator decides
    the split (this is what the CLI, the library, the server and the cluster's workers use)."""
    from bgremove.devices import place

    accelerator = place(device).accelerator is not None
    return plan(workers, threads, accelerator=accelerator, mode=mode, images=images, cores=cores)


def workers_for(session: Session | None, *, images: int | None = None,
                mode: str = "balanced") -> int:
    """Workers for a session made elsewhere (`bgremove.new_session(threads=...)`)."""
    if session is None:  # a dry run: no work is done
        return 1
    accelerator = bool(session.providers) and session.providers[0] != "CPUExecutionProvider"
    threads = getattr(session, "threads", None)
    return plan(None, None if accelerator else threads, remote=session.kind == "remote",
                accelerator=accelerator, mode=mode, images=images)[0]
