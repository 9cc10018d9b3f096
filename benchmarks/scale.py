"""Scale: does the engine fill the machine at hand, in every mode, for any batch size?

    python benchmarks/scale.py [--device cpu|cuda] [--modes fast,balanced,quality] [--no-write]

1. A workers x onnxruntime-threads grid for each mode on the 30 photos of
   `benchmarks/throughput.py` (PNG out, each point a fresh `bgremove` process timed from start to
   exit), next to the defaults `bgremove.parallel` picks: the defaults should reach 90% of the
   grid's best point.
2. The CPU-side floor once the model is elsewhere (a GPU): decode + the model's input resize +
   PNG encode alone, on all cores; and the bare model's rate on the device, one input at a time
   and in batches (the relabelled bundled model takes a batch of N).
3. Any batch size: on trees of 10,000 and 100,000 small files, `--dry-run`'s peak memory (it
   should stay flat) and how long a real run takes to write its first output.
Writes the `scale` section of BENCHMARKS.md, with the machine described.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.sections import bars_text, cpu, write_section  # noqa: E402
from benchmarks.throughput import WORK, build_photos, environment, measure  # noqa: E402

TREES = WORK.parent / "trees"
MODEL = ROOT / "bgremove" / "models" / "u2netp.onnx"


def machine(device: str) -> str:
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    gpu = ""
    if shutil.which("nvidia-smi"):
        names = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        gpu = "; " + "; ".join(line.split(" (UUID")[0] for line in names.splitlines())
    import onnxruntime

    return (f"{cpu()}{memory}{gpu}; onnxruntime {onnxruntime.__version__} "
            f"({', '.join(onnxruntime.get_available_providers())}); --device {device}")


def grid_points(cores: int, device: str) -> list[tuple[int, int]]:
    if device != "cpu":  # the model is on the GPU: threads only serve its CPU fallbacks
        return [(w, 1) for w in sorted({2, 4, cores // 2, cores, 2 * cores}) if w >= 1]
    workers = sorted({1, 2, 4, 8, 16, cores, 2 * cores} & set(range(1, 2 * cores + 1)))
    threads = sorted({1, 2, 4, cores} & set(range(1, cores + 1)))
    return [(w, t) for w in workers for t in threads if w * t <= 2 * cores]


def run_bgremove(photos: Path, mode: str, device: str, *extra: str) -> float:
    out = WORK / "scale-out"
    command = [sys.executable, "-m", "bgremove", str(photos), "-o", str(out), "--mode", mode,
               "--output-format", "png", "--device", device, "--quiet", *extra]
    count = sum(1 for _ in photos.iterdir())
    return count / measure(command, expect=out, count=count)["seconds"]


CPU_SIDE = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
from bgremove.backends.local import OnnxSaliency
from bgremove.imaging.compose import encode
from bgremove.imaging.decode import decode
from bgremove.options import OutputFormat
from PIL import Image

paths, threads = sys.argv[1:-1], int(sys.argv[-1])
model = OnnxSaliency(Path("MODEL"), 1)

def one(path):
    image = decode(Path(path).read_bytes())
    model.prepare(image.rgb)
    alpha = np.full(image.rgb.shape[:2], 255, np.uint8)
    rgba = Image.fromarray(image.rgb); rgba.putalpha(Image.fromarray(alpha))
    return len(encode(rgba, OutputFormat.png))

with ThreadPoolExecutor(threads) as pool:
    list(pool.map(one, paths[:4]))
    started = time.perf_counter()
    list(pool.map(one, paths))
print(json.dumps({"rate": len(paths) / (time.perf_counter() - started)}))
"""

MODEL_ALONE = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
from bgremove.devices import place

device, batch = sys.argv[1], int(sys.argv[2])
options = ort.SessionOptions()
session = ort.InferenceSession("MODEL", options, providers=place(device).providers)
name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
x = np.random.default_rng(0).standard_normal((batch, 3, 320, 320)).astype(np.float32)
for _ in range(3):
    session.run([out], {name: x})
runs, started = 0, time.perf_counter()
while time.perf_counter() - started < 5:
    session.run([out], {name: x})
    runs += 1
print(json.dumps({"rate": runs * batch / (time.perf_counter() - started),
                  "provider": session.get_providers()[0]}))
"""


def python(code: str, *args: str) -> dict:
    code = code.replace("MODEL", str(MODEL))
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env=environment(), check=True)
    return json.loads(result.stdout)


def tree(count: int) -> Path:
    """`count` tiny PNGs, 1,000 to a folder (built once)."""
    from PIL import Image

    root = TREES / f"{count}"
    done = root / ".complete"
    if done.exists():
        return root
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    for i in range(count):
        folder = root / f"d{i // 1000:04}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:06}.png").write_bytes(data)
    done.write_text("")
    return root


def first_output_seconds(root: Path, env: dict[str, str] | None = None) -> float:
    """Seconds from starting a real run on `root` to its first output on disk (`env`: another
    bgremove's, by its PYTHONPATH)."""
    out = WORK / "scale-first"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bgremove", str(root), "-o", str(out),
                             "--mode", "fast", "--quiet"], env=env or environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (out.exists() and any(f.endswith(".webp")
                                        for _, _, names in os.walk(out) for f in names)):
            if proc.poll() is not None:
                raise SystemExit("the run ended before writing anything")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default="fast,balanced,quality")
    parser.add_argument("--no-trees", action="store_true", help="skip the 10k/100k file trees")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = parser.parse_args()

    from bgremove.parallel import plan, usable_cores

    cores = usable_cores()
    photos = build_photos(WORK / "in")
    folder = WORK / "in"
    n = len(photos)
    lines = [f"Scale, measured by `benchmarks/scale.py` on {machine(args.device)}. {n} photos "
             "of 800-2400 px (those of the throughput section), PNG out; images/s of a whole "
             "fresh process (start-up and model load included)."]
    bars = []
    fast_rate = None
    for mode in args.modes.split(","):
        defaults = plan(None, None, mode=mode, accelerator=args.device != "cpu")
        rates = {}
        for workers, threads in grid_points(cores, args.device):
            rates[(workers, threads)] = run_bgremove(folder, mode, args.device, "--workers",
                                                     str(workers), "--threads", str(threads))
            print(f"{mode} {workers}x{threads}: {rates[(workers, threads)]:.2f}", file=sys.stderr)
        default_rate = run_bgremove(folder, mode, args.device)
        best = max(rates, key=rates.get)
        thread_counts = sorted({t for _, t in rates})
        lines += ["", f"**{mode}**: defaults ({defaults[0]} workers x {defaults[1]} threads) "
                      f"{default_rate:.2f} img/s = {default_rate / rates[best]:.0%} of the best "
                      f"point ({best[0]} x {best[1]}: {rates[best]:.2f} img/s).", "",
                  "| workers | " + " | ".join(f"{t} thread(s)" for t in thread_counts) + " |",
                  "|---:|" + "---:|" * len(thread_counts)]
        for workers in sorted({w for w, _ in rates}):
            cells = [f"{rates[(workers, t)]:.2f}" if (workers, t) in rates else "-"
                     for t in thread_counts]
            lines.append(f"| {workers} | " + " | ".join(cells) + " |")
        bars.append((f"{mode} defaults within 90% of the grid's best",
                     default_rate >= 0.9 * rates[best], f"{default_rate / rates[best]:.0%}"))
        if mode == "fast":
            fast_rate = default_rate
        elif mode == "balanced" and fast_rate is not None:
            bars.append(("balanced at least 0.8x fast", default_rate >= 0.8 * fast_rate,
                         f"{default_rate / fast_rate:.2f}x"))

    cpu_side = python(CPU_SIDE, *map(str, photos), str(cores))["rate"]
    single = python(MODEL_ALONE, args.device, "1")
    try:
        batched = {b: python(MODEL_ALONE, args.device, str(b))["rate"] for b in (4, 16)}
    except subprocess.CalledProcessError:  # a model file with a fixed batch of one
        batched = {}
    lines += ["", f"CPU-side floor (decode + model-input resize + PNG encode, {cores} threads, no "
                  f"model): {cpu_side:.1f} img/s. The bare model on {single['provider']}: "
                  f"{single['rate']:.1f} inferences/s one at a time, "
                  + (", ".join(f"{rate:.1f}/s in batches of {b}" for b, rate in batched.items())
                     or "(this model file takes no batches)") + "."]
    if args.device != "cpu" and fast_rate is not None:
        bars.append(("fast at least 80% of the CPU-side floor", fast_rate >= 0.8 * cpu_side,
                     f"{fast_rate / cpu_side:.0%}"))

    if not args.no_trees:
        rss = {}
        for count in (10_000, 100_000):
            root = tree(count)
            result = measure([sys.executable, "-m", "bgremove", str(root), "-o",
                              str(WORK / "scale-dry"), "--dry-run", "--quiet"])
            rss[count] = result["rss_mib"]
            print(f"dry run {count}: {result['seconds']:.1f} s {rss[count]:.0f} MiB",
                  file=sys.stderr)
        first = min(first_output_seconds(tree(100_000)) for _ in range(3))
        lines += ["", f"Any batch size: `--dry-run` over 10,000 files peaks at {rss[10_000]:.0f} "
                      f"MiB, over 100,000 at {rss[100_000]:.0f} MiB; a real run over the "
                      f"100,000 writes its first output after {first:.2f} s (best of 3)."]
        bars += [("dry run under 150 MB at 100,000 files", rss[100_000] < 150,
                  f"{rss[100_000]:.0f} MiB"),
                 ("dry-run memory flat from 10,000 to 100,000 (within 20%)",
                  rss[100_000] <= 1.2 * rss[10_000], f"{rss[100_000] / rss[10_000] - 1:+.0%}"),
                 ("first output within 2 s", first <= 2.0, f"{first:.2f} s")]
    lines += ["", bars_text(bars),
              f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}."]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section("scale", section)


if __name__ == "__main__":
    main()
