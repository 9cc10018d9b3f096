"""`--cluster local:N` against the local engine, and what a Dask chunk costs.

1. End to end: the same 60 photos (800 px on the longer side, built from `samples/`), each run a
   fresh `bgremove` process into an empty folder, timed from start to exit (start-up, the cluster's
   start and the model loads included), the local engine and `--cluster local:N` alternating.
2. Start-up: connecting a `local:N` cluster and loading the model on its workers, in-process.
3. Per chunk: chunks of one file whose output exists already (written "in this job"), so a chunk
   does everything but the image: the Dask task, the model lookup, the folder listing for
   leftovers, the stop check, the stat. Sent all at once through the workers: wall time / chunks.

    python benchmarks/cluster.py                 # about 5 minutes on 2 cores
    python benchmarks/cluster.py --rounds 1 --workers 2

Rewrites the `cluster` section of BENCHMARKS.md when it has one; prints it either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sections import BENCHMARKS_MD, write_section  # noqa: E402


def make_photos(folder: Path, count: int, side: int) -> None:
    from PIL import Image

    photos = sorted(p for p in (ROOT / "samples").iterdir() if p.suffix != ".md")
    folder.mkdir(parents=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        with Image.open(photo) as image:
            image = image.convert("RGB")
            scale = side / max(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)))
            image.save(folder / f"{i:03}-{photo.stem}.jpg", quality=92)


def timed_run(src: Path, out: Path, extra: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bgremove", str(src), "-o", str(out),
                           "--mode", "fast", "-q", *extra], capture_output=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode())
    return seconds


def start_up_and_chunk_cost(folder: Path, workers: int, chunks: int) -> tuple[float, float]:
    """(seconds to start a local:N cluster with the model loaded, ms of a worker thread per
    chunk of one file)."""
    from dataclasses import replace

    import bgremove
    from bgremove import cluster as dc
    from bgremove.atomic import write_atomic
    from bgremove.cluster.client import filesystem_now
    from bgremove.cluster.worker import run_chunk
    from bgremove.executors import BatchJob, WriteGate

    src, out = folder / "one", folder / "one-out"
    make_photos(src, 1, 64)
    out.mkdir()
    started = time.perf_counter()
    batch = bgremove.Batch([str(src)], out)
    with dc.connect(f"local:{workers}") as cluster:
        executor = dc.DaskExecutor(cluster)
        up = time.perf_counter() - started
        executor.start(BatchJob(None, batch.options, None, False, out, WriteGate()))
        assert executor.job is not None
        job = replace(executor.job, started_ns=filesystem_now(out))
        source = next(src.iterdir())
        files = []
        for i in range(chunks):
            dest = out / f"{i}.webp"
            write_atomic(dest, b"done")  # after the job's start: counted done, not redone
            files.append([(str(source), str(dest), False)])
        client = cluster.client
        client.gather(client.map(run_chunk, [job] * 8, files[:8], pure=False))
        started = time.perf_counter()
        answers = client.gather(client.map(run_chunk, [job] * chunks, files, pure=False))
        # the time of one worker thread per chunk: the wall time of all, shared by the threads
        per_chunk = (time.perf_counter() - started) * workers / chunks * 1000
        assert all(a[0][0] == "done" for a in answers)
    return up, per_chunk


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--side", type=int, default=800)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=400)
    args = parser.parse_args()

    import dask
    import distributed

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "in"
        make_photos(src, args.photos, args.side)
        load_before = load()
        local, cluster = [], []
        spec = f"local:{args.workers}"
        for _ in range(args.rounds):
            local.append(timed_run(src, folder / "out", []))
            cluster.append(timed_run(src, folder / "out", ["--cluster", spec]))
        load_after = load()
        up, per_chunk = start_up_and_chunk_cost(folder, args.workers, args.chunks)

    cores = len(os.sched_getaffinity(0))
    median_local, median_cluster = statistics.median(local), statistics.median(cluster)
    from bgremove.cluster.client import CHUNK

    per_image = median_local / args.photos * args.workers * 1000
    body = f"""\
Dask, measured {time.strftime('%Y-%m-%d')} by `benchmarks/cluster.py` on {cores} cores \
({platform.machine()}, Python {platform.python_version()}, dask {dask.__version__}, distributed \
{distributed.__version__}): {args.photos} JPEG photos, {args.side} px on the longer side, \
`--mode fast`, each run a fresh process timed from start to exit, median of {args.rounds} \
alternating rounds. Load average (1 min) {load_before} when the rounds began, {load_after} when \
they ended: other work on the machine slows both alike.

| Run | Seconds | Images/s |
|---|---:|---:|
| `bgremove` (local engine, threads) | {median_local:.1f} | {args.photos / median_local:.2f} |
| `bgremove --cluster {spec}` | {median_cluster:.1f} | {args.photos / median_cluster:.2f} |

Starting `{spec}` with the model loaded on every worker: {up:.1f} s. One chunk beyond its images \
(the Dask task, the model lookup, one listing of the output folder, the stop check, a stat): \
{per_chunk:.1f} ms of a worker thread, against about {per_image:.0f} ms of a thread per image here \
(local engine); at {CHUNK} files per chunk, {per_chunk / CHUNK:.2f} ms per file \
({per_chunk / CHUNK / per_image:.2%})."""
    print(body)
    if "<!-- cluster:start -->" in BENCHMARKS_MD.read_text():
        write_section("cluster", body)


if __name__ == "__main__":
    main()
