"""How many images to work on at once, and how many threads each inference gets, for this machine.

Measured on 2 cores (BENCHMARKS.md): two images in flight with one onnxruntime thread each beats
one image with two threads, and far beats two with two (four busy threads on two cores). One
thread per inference needs no synchronisation inside the model, and while one worker decodes or
encodes (Pillow and numpy release the GIL) the other keeps its core busy with the model. So by
default the cores are split between the images in flight, never oversubscribed; a few workers
with several threads each on big machines, since every image in flight holds its own buffers.

This module is imported before any work starts: it must stay free of heavy imports.
"""

from __future__ import annotations

import os

# Past this many images in flight, more workers only cost memory: give them more threads instead.
MAX_AUTO_WORKERS = 4
# Remote work waits on the network, not the CPU; the API's rate limit is the real bound.
REMOTE_WORKERS = 8  # enough to keep the cap busy with ~0.25 s answers (benchmarks/remote_rate.py)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` set)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def plan(workers: int | None, threads: int | None, *, local: bool = True,
         cores: int | None = None, images: int | None = None) -> tuple[int, int]:
    """(workers, onnxruntime threads per inference): what was asked for, the rest by the cores.

    `images`, when known, caps the workers: a single photo gets every core for its inference.
    """
    cores = cores or usable_cores()
    if workers is None:
        if not local:
            workers = REMOTE_WORKERS
        elif threads is None:
            workers = min(max(2, cores), MAX_AUTO_WORKERS)
        else:
            workers = max(2, cores // threads)
        if images is not None:
            workers = max(1, min(workers, images))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads
