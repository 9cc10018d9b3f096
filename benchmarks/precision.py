"""Reduced precision: what the bundled model's int8 build gains in speed and costs in quality.

Speed, everything in one run so load from elsewhere falls on all of it alike (variants take
turns; best of --rounds rounds):
- the model floor: the bare `InferenceSession.run` of a 1 x 3 x 320 x 320 input, images/s on 1
  and 2 threads, for fp32 at each graph optimisation level, fp32 loaded from its saved optimised
  graph (and what that saves at load), a batch of two on two threads, and the int8 build;
- fast mode end to end (`LocalSession.process`, photo bytes in, PNG bytes out; 2 workers x 1
  thread, the CLI's plan on 2 cores) with fp32 and with int8, against the fp32 floor at its
  best thread setting.
Quality, int8 against fp32 in every mode: sod-dev maxF and MAE (all 110 photos, and each of the 5
folds of benchmarks/quality.py; the int8 build is calibrated on samples/ only, so every photo
here is held out) and GT01's soft matte (SAD/1000 over the image and in the trimap's unknown
region), scored on the PNG the product writes.

Start-up: what the int8 check (bgremove/precision_guard.py) costs, and whole sessions' loads.

Bars (issue 22): fast mode with int8 at least 1.3x the fp32 floor's images/s; int8's maxF within
0.003 and MAE within 0.002 of fp32's in every mode; GT01's SAD within 2%. `auto` picks int8 only
on a CPU with the instructions named in bgremove/precision.py (issue 34).

    python benchmarks/precision.py --limit 10 --no-write   # a quick look
    python benchmarks/precision.py                          # rewrites BENCHMARKS.md "precision"
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import (  # noqa: E402
    FOLDS,
    SodScore,
    alpha_at,
    bgremove_pipeline,
    default_eval_dir,
    folds,
    sod_pairs,
    soft_errors,
)
from benchmarks.sections import bars_text, cpu, write_section  # noqa: E402
from bgremove.backends.local import LocalSession  # noqa: E402
from bgremove.models import BUNDLED_PATH  # noqa: E402
from bgremove.options import Mode  # noqa: E402
from bgremove.precision import INT8_FLAGS, INT8_PATH, cpu_flags  # noqa: E402

SPEED_BAR, MAXF_BAR, MAE_BAR, SAD_BAR = 1.3, 0.003, 0.002, 0.02
# Flags worth naming: the int8 dot products, and bf16 for the record.
NAMED_FLAGS = sorted(INT8_FLAGS | {"avx512f", "avx2", "avx512_bf16", "amx_bf16", "amx_tile"})


# --- speed ---------------------------------------------------------------------------------------


def session(path: Path, threads: int, level: str = "ORT_ENABLE_ALL", save: Path | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.enable_mem_pattern = False  # as bgremove runs it (backends/local.py)
    if save is not None:
        opts.optimized_model_filepath = str(save)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def model_input() -> np.ndarray:
    """One sample photo as the model sees it: 1 x 3 x 320 x 320."""
    from bgremove.backends.local import OnnxSaliency

    rgb = np.asarray(Image.open(ROOT / "samples" / "astronaut.jpg").convert("RGB"))
    return OnnxSaliency(BUNDLED_PATH, threads=1).prepare(rgb)


def floor_rate(sess, x: np.ndarray, runs: int) -> float:
    """Images/s of `runs` bare runs of the fused output, one after another."""
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    started = time.perf_counter()
    for _ in range(runs):
        sess.run([out], {name: x})
    return runs * len(x) / (time.perf_counter() - started)


def fast_rate(backend: LocalSession, photos: list[bytes], workers: int = 2) -> float:
    """Fast mode, bytes in to PNG bytes out, `workers` photos in flight: images/s."""
    run = bgremove_pipeline(backend, Mode.fast)
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        list(pool.map(run, photos))
    return len(photos) / (time.perf_counter() - started)


def photos_for_speed() -> list[bytes]:
    """The sample photos at 800 px (long side), as JPEG: the throughput benchmark's smallest."""
    out = []
    for path in sorted((ROOT / "samples").glob("*.*")):
        if path.suffix not in (".jpg", ".png", ".webp"):
            continue
        image = Image.open(path).convert("RGB")
        image.thumbnail((800, 800), Image.Resampling.LANCZOS)
        buffer = BytesIO()
        image.save(buffer, "JPEG", quality=92)
        out.append(buffer.getvalue())
    return out * 2


def speed(rounds: int, runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best images/s of each variant over `rounds` alternating rounds, and load times (s)."""
    import onnxruntime  # noqa: F401  (imported before timing anything)

    x = model_input()
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "optimised.onnx"
        started = time.perf_counter()
        session(BUNDLED_PATH, 1, save=saved)
        loads["fp32, optimised at load (and saved)"] = time.perf_counter() - started
        started = time.perf_counter()
        session(saved, 1, "ORT_DISABLE_ALL")
        loads["fp32, the saved optimised graph"] = time.perf_counter() - started
        started = time.perf_counter()
        session(INT8_PATH, 1)
        loads["int8, optimised at load"] = time.perf_counter() - started
        variants = {}
        for threads in (1, 2):
            for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED",
                          "ORT_ENABLE_ALL"):
                variants[f"fp32 {level.removeprefix('ORT_').lower()}, {threads} thr"] = (
                    session(BUNDLED_PATH, threads, level), x)
            variants[f"fp32 saved optimised graph, {threads} thr"] = (
                session(saved, threads, "ORT_DISABLE_ALL"), x)
            variants[f"int8, {threads} thr"] = (session(INT8_PATH, threads), x)
        variants["fp32 batch of 2, 2 thr"] = (session(BUNDLED_PATH, 2), np.concatenate([x, x]))
        variants["int8 batch of 2, 2 thr"] = (session(INT8_PATH, 2), np.concatenate([x, x]))
        photos = photos_for_speed()
        backends = {"fast mode fp32 (2 workers x 1 thr)": LocalSession(threads=1, precision="fp32"),
                    "fast mode int8 (2 workers x 1 thr)": LocalSession(threads=1, precision="int8")}
        for sess, batch in variants.values():  # warm-up
            floor_rate(sess, batch, 1)
        for backend in backends.values():
            fast_rate(backend, photos[:2])
        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, (sess, batch) in variants.items():
                best[name] = max(best.get(name, 0.0), floor_rate(sess, batch, runs))
            for name, backend in backends.items():
                best[name] = max(best.get(name, 0.0), fast_rate(backend, photos))
    return best, loads


def guard_cost(rounds: int = 5) -> dict[str, float]:
    """What the int8 check (bgremove/precision_guard.py) adds to a session's load: best of
    `rounds` wall and CPU seconds of the probe run and its comparison, on 1 and 2 threads, and
    a whole int8 session's load (the check included) next to an fp32 one's."""
    from bgremove.backends.local import OnnxSaliency
    from bgremove.precision_guard import failure

    out: dict[str, float] = {}
    for threads in (1, 2):
        int8 = OnnxSaliency(INT8_PATH, threads)
        failure(int8)  # warm-up: the first run of a session allocates
        walls, cpus = [], []
        for _ in range(rounds):
            wall, cpu_time = time.perf_counter(), time.process_time()
            assert failure(int8) is None
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu_time)
        out[f"int8 check, {threads} thr (wall)"] = min(walls)
        out[f"int8 check, {threads} thr (CPU)"] = min(cpus)
    for precision in ("fp32", "int8"):
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            LocalSession(threads=2, precision=precision, device="cpu").close()
            times.append(time.perf_counter() - started)
        out[f"LocalSession {precision}{' with its check' if precision == 'int8' else ''}"] = min(
            times)
    return out


# --- quality -------------------------------------------------------------------------------------


def unknown_sad(alpha: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """SAD/1000 inside the trimap's unknown region (neither 0 nor 255)."""
    unknown = (trimap > 0) & (trimap < 255)
    return float(np.abs(alpha - gt)[unknown].sum() / 1000.0)


def quality(eval_dir: Path, limit: int | None) -> dict[tuple[str, str], dict]:
    """Per (precision, mode): the sod-dev score, and GT01's SAD (total, unknown region)."""
    pairs = sod_pairs(eval_dir, limit)
    gt01 = eval_dir / "alphamatting-gt01"
    gt01_bytes = (gt01 / "image.png").read_bytes()
    gt01_image = Image.open(gt01 / "alpha.png").convert("L")
    gt01_alpha = np.asarray(gt01_image, dtype=np.float64) / 255.0
    trimap = np.asarray(Image.open(gt01 / "trimap.png").convert("L"))
    out = {}
    for precision in ("fp32", "int8"):
        backend = LocalSession(precision=precision)
        for mode in Mode:
            run = bgremove_pipeline(backend, mode)
            score = SodScore()
            for image_path, gt_path in pairs:
                gt_image = Image.open(gt_path).convert("L")
                score.add(alpha_at(run(image_path.read_bytes()), gt_image.size),
                          np.asarray(gt_image) > 127)
            alpha = alpha_at(run(gt01_bytes), gt01_image.size)
            out[precision, mode.value] = {
                "sod": score, "sad": soft_errors(alpha, gt01_alpha)[0],
                "unknown": unknown_sad(alpha, gt01_alpha, trimap)}
            print(f"  {precision} {mode.value}: maxF {score.max_f():.4f} "
                  f"MAE {score.mean_abs_error():.4f}", file=sys.stderr, flush=True)
    return out


def quality_table(q: dict) -> tuple[str, list[tuple[str, bool, str]]]:
    lines = ["| mode | precision | maxF ↑ | MAE ↓ | worst fold Δ maxF | worst fold Δ MAE "
             "| GT01 SAD ↓ | GT01 SAD unknown ↓ |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    bars = []
    for mode in Mode:
        ref, low = q["fp32", mode.value], q["int8", mode.value]
        parts = folds(len(ref["sod"].mae))
        d_f = [low["sod"].subset(p).max_f() - ref["sod"].subset(p).max_f() for p in parts]
        d_mae = [low["sod"].subset(p).mean_abs_error() - ref["sod"].subset(p).mean_abs_error()
                 for p in parts]
        for name, row in (("fp32", ref), ("int8", low)):
            worst = ("" if name == "fp32" else f"{min(d_f):+.4f} | {max(d_mae):+.4f}")
            lines.append(f"| {mode.value} | {name} | {row['sod'].max_f():.4f} "
                         f"| {row['sod'].mean_abs_error():.4f} | {worst or ' | '} "
                         f"| {row['sad']:.2f} | {row['unknown']:.2f} |")
        df = low["sod"].max_f() - ref["sod"].max_f()
        dm = low["sod"].mean_abs_error() - ref["sod"].mean_abs_error()
        ds = low["sad"] / ref["sad"] - 1
        du = low["unknown"] / ref["unknown"] - 1
        bars.append((f"{mode.value}: int8 maxF within {MAXF_BAR} and MAE within {MAE_BAR} of "
                     f"fp32, GT01 SAD within {SAD_BAR:.0%}",
                     df >= -MAXF_BAR and dm <= MAE_BAR and ds <= SAD_BAR and du <= SAD_BAR,
                     f"maxF {df:+.4f}, MAE {dm:+.4f}, SAD {ds:+.1%}, unknown {du:+.1%}"))
    return "\n".join(lines), bars


def speed_table(best: dict[str, float], loads: dict[str, float]) -> tuple[str, list]:
    floor = max(best["fp32 enable_all, 1 thr"], best["fp32 enable_all, 2 thr"])
    lines = ["| variant | images/s | × fp32 floor |", "|---|---:|---:|"]
    lines += [f"| {name} | {rate:.2f} | {rate / floor:.2f} |" for name, rate in best.items()]
    lines.append("")
    lines.append("Session load: " + "; ".join(f"{k} {v * 1000:.0f} ms" for k, v in loads.items())
                 + ".")
    fast = best["fast mode int8 (2 workers x 1 thr)"]
    return "\n".join(lines), [(f"fast mode with int8 at least {SPEED_BAR}× the fp32 floor",
                               fast >= SPEED_BAR * floor,
                               f"{fast:.2f} img/s vs floor {floor:.2f}: {fast / floor:.2f}×")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=default_eval_dir())
    parser.add_argument("--limit", type=int, help="only the first N sod-dev images")
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds (best of)")
    parser.add_argument("--runs", type=int, default=10, help="model runs per speed round")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args()
    if not INT8_PATH.is_file():
        raise SystemExit(f"no {INT8_PATH}: build it with scripts/quantize_model.py")

    flags = ", ".join(f for f in NAMED_FLAGS if f in cpu_flags()) or "none of " + ", ".join(
        NAMED_FLAGS)
    best, loads = speed(args.rounds, args.runs)
    loads.update(guard_cost())
    speeds, speed_bars = speed_table(best, loads)
    print(speeds)
    qualities, quality_bars = ("", [])
    if not args.skip_quality:
        qualities, quality_bars = quality_table(quality(args.eval_dir, args.limit))
        print(qualities)
    bars = bars_text(speed_bars + quality_bars)
    print(bars)
    if args.no_write:
        return
    if args.limit or args.skip_quality:
        raise SystemExit("not writing BENCHMARKS.md from a partial run (add --no-write)")
    write_section("precision", (
        f"Precision, measured {datetime.date.today().isoformat()} by `benchmarks/precision.py` "
        f"on {cpu()}; instruction sets: {flags}. int8: `bgremove/models/u2netp-int8.onnx`, built "
        "by `scripts/quantize_model.py` from the bundled fp32 file. Speed: best of "
        f"{args.rounds} alternating rounds of {args.runs} runs at 320 × 320; the floor is fp32's "
        "bare `InferenceSession.run` at its better thread setting; fast mode is 10 photos at "
        "800 px, bytes in to PNG bytes out.\n\n"
        f"{speeds}\n\nQuality: the PNG each mode writes, sod-dev ({FOLDS} folds; fold Δ is int8 "
        f"minus fp32 on the fold where int8 does worst) and GT01.\n\n{qualities}\n\n{bars}"))
    print("wrote the precision section of BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
