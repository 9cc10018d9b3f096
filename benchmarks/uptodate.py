"""Up-to-date runs: what reading the outputs' stamps costs, against the run that only asked
whether an output exists (bgremove 0.2, the commit --ref), measured in one run.

    python benchmarks/uptodate.py [--ref 7105962] [--no-write]

On the trees of `benchmarks/scale.py` (tiny PNGs, 1,000 to a folder), each run a fresh
`bgremove` process timed from start to exit, best of 3:
1. 10,000 files whose outputs all exist: bgremove 0.2 skipping them, next to this checkout with
   every output up to date (a `stat` of the input and a read of the output's header each), the
   same after every input was touched (new modification times, as after a fresh checkout: each
   input's content is hashed), and `--check`.
2. A real run over 100,000 files with no outputs yet: seconds to the first output on disk, both
   versions.
The 10,000 outputs are what a run of this checkout writes (the stamped cut-out of the tree's
image, stamped for each input by `bgremove.stamps`, as the engine stamps), checked to be up to
date by `--check` before anything is timed: running the model 10,000 times would measure the
model, not the check. Writes the `uptodate` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scale import first_output_seconds, tree  # noqa: E402
from benchmarks.sections import bars_text, cpu, write_section  # noqa: E402
from benchmarks.throughput import WORK, environment  # noqa: E402

OLD = WORK.parent / "uptodate-old"


def old_checkout(ref: str) -> Path:
    """The source of bgremove at `ref`, unpacked from git (once)."""
    target = OLD / ref
    if not (target / "bgremove").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "bgremove"],
                                 capture_output=True, check=True).stdout
        archive_path = target / "src.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(target, filter="data")
        archive_path.unlink()
    return target


def env_for(source: Path) -> dict[str, str]:
    env = environment()
    env["PYTHONPATH"] = str(source)
    return env


def timed(source: Path, *args: str, expect: int = 0) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bgremove", *args, "--quiet"],
                          env=env_for(source), capture_output=True)
    seconds = time.perf_counter() - started
    if proc.returncode != expect:
        raise SystemExit(f"bgremove {' '.join(args)} exited {proc.returncode}, not {expect}: "
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return seconds


def best(runs: int, source: Path, *args: str, expect: int = 0) -> float:
    return min(timed(source, *args, expect=expect) for _ in range(runs))


def stamped_outputs(root: Path, out: Path) -> int:
    """Write, under `out`, the outputs a run of this checkout writes for every file of `root`
    (fast mode, WebP): its one cut-out, stamped for each input as the engine stamps it."""
    import bgremove
    from bgremove import stamps

    options = bgremove.RemovalOptions.build(mode="fast")
    recipe = stamps.Recipe.of(options, stamps.local_model_id(None))
    shutil.rmtree(out, ignore_errors=True)
    cutout = None
    count = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        (out / folder.name).mkdir(parents=True)
        for source in sorted(folder.iterdir()):
            with open(source, "rb") as f:
                stat = os.fstat(f.fileno())
                data = f.read()
            if cutout is None:  # every file of the tree is the same image
                cutout = bgremove.remove(data, mode="fast")
            (out / folder.name / (source.stem + ".webp")).write_bytes(
                stamps.embed(cutout, recipe.stamp(data, stat)))
            count += 1
    return count


def hash_rate() -> float:
    """SHA-256 over 256 MiB in memory, GB/s: what hashing a changed-time input costs per byte."""
    data = os.urandom(1 << 26)
    started = time.perf_counter()
    for _ in range(4):
        hashlib.sha256(data).digest()
    return 4 * len(data) / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="7105962", help="the skip-if-it-exists version")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = parser.parse_args()

    old = old_checkout(args.ref)
    small, big = tree(10_000), tree(100_000)
    out = WORK.parent / "uptodate-out"
    made = stamped_outputs(small, out)
    run = [str(small), "-o", str(out), "--mode", "fast"]
    best(1, ROOT, *run, "--check")  # the outputs are what this checkout calls up to date
    empty = WORK.parent / "uptodate-empty"
    empty.mkdir(parents=True, exist_ok=True)
    times = {
        "start-up and model load alone (an empty folder)": best(
            args.runs, ROOT, str(empty), "-o", str(out), "--mode", "fast"),
        "0.2, outputs exist (skipped)": best(args.runs, old, *run),
        "up to date (stat + header)": best(args.runs, ROOT, *run),
        "--check, up to date": best(args.runs, ROOT, *run, "--check"),
    }
    touched = time.time_ns()
    for folder in small.iterdir():
        for source in folder.iterdir() if folder.is_dir() else ():
            os.utime(source, ns=(touched, touched))
    # Every input's time changed and its content did not: each is hashed, on every run (the
    # stamp keeps the time it was made from).
    times["up to date, every input touched (hashed)"] = best(args.runs, ROOT, *run)
    reference = times["0.2, outputs exist (skipped)"]
    first_old = min(first_output_seconds(big, env_for(old)) for _ in range(args.runs))
    first_new = min(first_output_seconds(big, env_for(ROOT)) for _ in range(args.runs))
    shutil.rmtree(out, ignore_errors=True)
    rate = hash_rate()

    lines = [f"Up-to-date runs, measured by `benchmarks/uptodate.py` on {cpu()}: bgremove 0.2 "
             f"(commit {args.ref}, which skipped every output that exists) and this checkout, "
             f"in one run; each a fresh process from start to exit, best of {args.runs}.", "",
             f"**A re-run over {made:,} files** (tiny PNGs, 1,000 to a folder; WebP outputs, "
             "all up to date):", "",
             "| run | seconds | x 0.2's skip |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.2f} | {seconds / reference:.2f} |"
              for name, seconds in times.items()]
    lines += ["", f"**First output of a run over 100,000 files** (no outputs yet): 0.2 "
                  f"{first_old:.2f} s, this checkout {first_new:.2f} s "
                  f"({first_new / first_old:.2f}x).", "",
              f"Hashing (an input whose time changed): SHA-256 at {rate:.2f} GB/s here, so "
              f"10,000 touched photos of 2 MB add about {10_000 * 2e6 / (rate * 1e9):.0f} s "
              "of hashing (plus reading them from disk)."]
    bars = [("up-to-date re-run over 10,000 files within seconds (under 10 s)",
             times["up to date (stat + header)"] < 10,
             f"{times['up to date (stat + header)']:.2f} s"),
            ("first output on 100,000 files within 2 s", first_new <= 2.0, f"{first_new:.2f} s")]
    lines += ["", bars_text(bars),
              f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}."]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("uptodate", section)


if __name__ == "__main__":
    main()
