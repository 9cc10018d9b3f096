"""Each stage of the local pipeline: its cost per megapixel, and how it scales from 1 to 2 threads.

    python benchmarks/stages.py [--repeat 3] [--no-write]

The engine runs one image per worker thread, so a stage that holds Python's lock (the GIL) for
its heavy loop serialises the workers however many cores there are. This script times every
stage of the matting, compositing and encoding on the ten 1600-px photos of
`benchmarks/throughput.py` (built under .bench/throughput/in), first on one thread, then on two
threads at once, each doing the same work on its own copy of the inputs: the speed-up is
2 x (one thread's time) / (two threads' time), 2.0 for a stage that never holds the lock, 1.0 for
one that always does. The model runs with one onnxruntime thread, as each of the two default
workers does on 2 cores. Whole-image rows run `LocalSession.process` (bytes in, PNG bytes out).

Rewrites the `stages` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sections import write_section  # noqa: E402
from benchmarks.throughput import WORK, build_photos  # noqa: E402
from bgremove.backends.local import LocalSession  # noqa: E402
from bgremove.imaging import compose as compose_mod  # noqa: E402
from bgremove.imaging import matte, matting, multiscale  # noqa: E402
from bgremove.imaging.decode import decode  # noqa: E402
from bgremove.imaging.filters import resize  # noqa: E402
from bgremove.options import Mode, OutputFormat, RemovalOptions  # noqa: E402


def run_threads(work: Callable[[int], None], threads: int,
                cpu: list[float] | None = None) -> float:
    """Seconds for `threads` threads to run work(k) side by side, k = 0..threads-1; the CPU
    seconds of thread 0 appended to `cpu`."""
    barrier = threading.Barrier(threads + 1)

    def body(k: int) -> None:
        barrier.wait()
        started = time.thread_time()
        work(k)
        if k == 0 and cpu is not None:
            cpu.append(time.thread_time() - started)

    pool = [threading.Thread(target=body, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def run_processes(work: Callable[[int], None], count: int) -> float:
    """Seconds for `count` forked processes to run work(k) side by side: no shared GIL."""
    started = time.perf_counter()
    pids = []
    for k in range(count):
        pid = os.fork()
        if pid == 0:  # the child: run, then leave without any clean-up of the parent's state
            try:
                work(k)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return time.perf_counter() - started


def measure(stage: Callable, inputs: list[tuple],
            repeat: int) -> tuple[float, float, float, float]:
    """(seconds for one pass over the inputs on one thread, its CPU seconds, speed-up with two
    threads, speed-up with two processes); best of `repeat`, the three taking turns so that other
    load on the machine hits them alike. CPU time is what other sessions' load changes least.
    Two processes share no lock: where threads fall short of them, the stage holds the GIL; where
    both fall short of 2, the cores were busy with something else."""
    copies = [list(inputs), [tuple(np.copy(a) if isinstance(a, np.ndarray) else a for a in args)
                             for args in inputs]]

    def work(k: int) -> None:
        for args in copies[k]:
            stage(*args)

    work(0)  # warm-up: lazy imports and first-call allocations
    one: list[float] = []
    cpu: list[float] = []
    two: list[float] = []
    procs: list[float] = []
    forks: list[float] = []
    for _ in range(repeat):
        one.append(run_threads(work, 1, cpu))
        two.append(run_threads(work, 2))
        procs.append(run_processes(work, 2))
        forks.append(run_processes(lambda k: None, 2))  # the cost of forking, taken off
    return min(one), min(cpu), 2 * min(one) / min(two), 2 * min(one) / (min(procs) - min(forks))


class Mapped:
    """A segmenter whose map is already made: times what comes after the model alone."""

    def __init__(self, saliency: np.ndarray):
        self.saliency = saliency

    def predict(self, rgb: object) -> np.ndarray:
        return self.saliency


# The stages that make up fast mode's image work (all but the model), summed below the table.
FAST_IMAGE_WORK = ("decode (JPEG)", "model input (Lanczos to 320 px, normalise)",
                   "fast: map to full size and finish (8 bits, one table)",
                   "compose RGBA (fast's 8-bit alpha)", "encode PNG")


def stages(backend: LocalSession, photos: list[Path]) -> list[tuple[str, Callable, list[tuple]]]:
    """(name, function, per-image arguments) for every stage, inputs computed once up front."""
    segmenter = backend.segmenter
    datas = [p.read_bytes() for p in photos]
    decoded = [decode(d) for d in datas]
    rgbs = [d.rgb for d in decoded]
    maps = [segmenter.predict(rgb) for rgb in rgbs]
    opts = {m: RemovalOptions(mode=m, output_format=OutputFormat.png) for m in Mode}
    alphas = [matte.compute_alpha(segmenter, rgb, Mode.balanced, True) for rgb in rgbs]
    fast_alphas = [matte.cutout_alpha(Mapped(m), rgb, Mode.fast, True)
                   for m, rgb in zip(maps, rgbs, strict=True)]
    cutouts = [compose_mod.compose(rgb, a, opts[Mode.fast]) for rgb, a in
               zip(rgbs, fast_alphas, strict=True)]
    ups = [resize(s, (rgb.shape[1], rgb.shape[0])) for s, rgb in zip(maps, rgbs, strict=True)]

    def model(x: np.ndarray) -> None:
        segmenter.session.run([segmenter.output_name], {segmenter.input_name: x})

    return [
        ("decode (JPEG)", decode, [(d,) for d in datas]),
        ("model input (Lanczos to 320 px, normalise)", segmenter.prepare,
         [(d.image if d.image is not None else d.rgb,) for d in decoded]),
        ("model, 320 px, 1 onnxruntime thread", model,
         [(segmenter.prepare(r),) for r in rgbs]),
        ("fast: map to full size and finish (8 bits, one table)", matte.cutout_alpha,
         [(Mapped(s), r, Mode.fast, True) for r, s in zip(rgbs, maps, strict=True)]),
        ("map to full size (bilinear, float: quality's views)", resize,
         [(s, (r.shape[1], r.shape[0])) for r, s in zip(rgbs, maps, strict=True)]),
        ("balanced: steepen the edge", matte.steepen_split,
         [(u, matte.STEEPNESS_ABOVE, matte.STEEPNESS_BELOW) for u in ups]),
        ("quality: three views (model runs included) and fusion", multiscale.quality_alpha,
         [(segmenter, r) for r in rgbs]),
        ("quality: matting the uncertain band", matting.refine,
         [(r, multiscale.quality_alpha(segmenter, r)) for r in rgbs]),
        ("finish edges (smooth)", matte.finish_edges, [(a, True) for a in alphas]),
        ("compose RGBA (fast's 8-bit alpha)", compose_mod.compose,
         [(r, a, opts[Mode.fast]) for r, a in zip(rgbs, fast_alphas, strict=True)]),
        ("compose RGBA (float alpha)", compose_mod.compose,
         [(r, a, opts[Mode.balanced]) for r, a in zip(rgbs, alphas, strict=True)]),
        ("quality: foreground colour clean-up", matte.estimate_foreground,
         [(r, a) for r, a in zip(rgbs, alphas, strict=True)]),
        ("preserve-shadows: shadow matte", matte.shadow_matte,
         [(r, a) for r, a in zip(rgbs, alphas, strict=True)]),
        ("encode PNG", compose_mod.encode, [(c, OutputFormat.png) for c in cutouts]),
        ("encode WebP", compose_mod.encode, [(c, OutputFormat.webp) for c in cutouts]),
        ("whole image, fast, PNG", backend.process, [(d, opts[Mode.fast]) for d in datas]),
        ("whole image, balanced, PNG", backend.process,
         [(d, opts[Mode.balanced]) for d in datas]),
        ("whole image, quality, PNG", backend.process, [(d, opts[Mode.quality]) for d in datas]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--side", type=int, default=1600, help="photos of this long side")
    parser.add_argument("--only", help="only stages whose name contains this")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = parser.parse_args()

    photos = [p for p in build_photos(WORK / "in") if p.name.startswith(f"{args.side}-")]
    backend = LocalSession(threads=1)
    megapixels = sum(decode(p.read_bytes()).rgb.shape[0] * decode(p.read_bytes()).rgb.shape[1]
                     for p in photos) / 1e6
    rows = []
    load_before = os.getloadavg()[0]
    for name, fn, inputs in stages(backend, photos):
        if args.only and args.only not in name:
            continue
        seconds, cpu, threads, processes = measure(fn, inputs, args.repeat)
        rows.append((name, seconds * 1000 / megapixels, cpu * 1000 / megapixels, threads,
                     processes))
        print(f"  {name:50s} {rows[-1][1]:8.1f} ms/MP  CPU {rows[-1][2]:8.1f} ms/MP  threads "
              f"x{threads:.2f}  processes x{processes:.2f}", file=sys.stderr)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"Stages, measured by `benchmarks/stages.py` on {cores} cores "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}): the {len(photos)} photos of {args.side} px "
        f"({megapixels:.1f} MP in all) of the throughput benchmark, best of {args.repeat}. "
        "ms per megapixel on one thread, wall and CPU time (the thread's own: what other "
        "sessions' load changes least); speed-up: the same work on each of two threads at once "
        "(2.0: the stage never holds Python's lock; 1.0: it always does), and on each of two "
        "processes (no shared lock: where threads fall short of processes, the stage holds the "
        "GIL; where both fall short of 2, other work had the cores; load average "
        f"{load_before:.1f} when the run began, {os.getloadavg()[0]:.1f} when it ended). The "
        "model runs on one onnxruntime thread, as each default worker does on 2 cores, in the "
        f"precision `--precision auto` picks here ({backend.precision.value}).",
        "",
        "| stage | ms per megapixel | CPU ms per megapixel | speed-up, 2 threads "
        "| speed-up, 2 processes |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {ms:.1f} | {c:.1f} | {t:.2f} | {p:.2f} |" for name, ms, c, t, p in rows]
    work = [(ms, c) for name, ms, c, _, _ in rows if name in FAST_IMAGE_WORK]
    if len(work) == len(FAST_IMAGE_WORK):
        lines += ["", f"Fast mode's image work (decode, model input, map, compose, encode PNG: "
                  f"all but the model): {sum(c for _, c in work):.1f} CPU ms per megapixel "
                  f"({sum(ms for ms, _ in work):.1f} ms wall) on one thread; the bar is 30."]
    section = "\n".join(lines)
    print(section)
    if not args.no_write and not args.only:
        write_section("stages", section)


if __name__ == "__main__":
    main()
