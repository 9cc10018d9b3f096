"""Batches on a Dask cluster (`--cluster`, the `bgremove[cluster]` extra).

The command runs as it does without a cluster: the planner walks the inputs, skips outputs that
exist, and records every outcome into the same `Summary`, so the console, `--json` and `--report`
see no difference. Only the images go elsewhere: `DaskExecutor` gathers the items that need work
into chunks (dozens of files per Dask task: per-task overhead and scheduler memory stay small at
millions of files), keeps a bounded window of chunks in flight, and `run_chunk` processes a chunk
on a worker with the model that `ModelPlugin` loaded there once per worker process.

Outputs are written on the workers, atomically (`atomic.write_atomic`: a temporary file in
the output's folder, renamed into place), so the cluster must share the filesystem, at the same
paths. When a worker dies, Dask runs its chunks again elsewhere; a chunk run again removes the
temporary files its items left behind and does not redo an output written since the job began
(its modification time is at least the job's start, read from the output folder's filesystem),
so every output is written once, whole.

Stopping (Ctrl-C): the job's Dask `Event` is set; a chunk checks it between images and returns
what it has done, the rest "not processed". The first stop waits for those answers (about one
image per worker thread); a second one cancels the job's futures and leaves.

This module imports Dask: it is loaded only when a cluster is asked for, and on the workers.
`dask worker ... --preload bgremove.cluster` imports it (and the local engine) when a worker
starts, so the first job does not wait for the imports.
"""

from bgremove.cluster.client import Cluster, DaskExecutor, connect
from bgremove.cluster.worker import dask_setup

__all__ = ["Cluster", "DaskExecutor", "connect", "dask_setup"]
