"""Matte quality of each mode on real photographs with human ground truth, and what it costs.

Scores the alpha the product actually writes: every image goes through the real local backend
(bundled U^2-Netp, `RemovalOptions(mode=..., output_format=png, include_mask=True)`), the PNG is
decoded and its alpha channel compared with the ground truth. A reference row runs rembg's own
pipeline (`rembg.remove` with a u2netp session, the same model file) in the same run.

- sod-dev (110 photos, binary salient-object masks): maxF and MAE, the U^2-Net paper's protocol
  (alpha read at the mask's size; maxF over 256 thresholds with precision and recall averaged over
  images before F is formed).
- alphamatting GT01 (one soft matte): SAD/1000 and MSE, over the whole image and inside the
  trimap's unknown region, where edge and hair refinement show.
- seconds per image (mean over sod-dev, bytes in to PNG bytes out), and each mode's cost over fast.
- the same scores on each of sod-dev's 5 folds (the split scripts/tune_quality.py cross-validates
  on; its held-out numbers are in the `quality-cv` section), with each mode's gain over fast.

Bars: fast at least matches rembg's u2netp on sod-dev (maxF >= 0.837, MAE <= 0.118); balanced
no worse than fast on sod-dev, on every fold and on GT01 (whole-image SAD within 1%, the tuning's
soft-matte guard); quality at least 0.007 maxF above and 0.0035 MAE below fast on average (the
issue's held-out bars, as gains; the folds show the spread) and no worse on GT01; quality at
most 3x fast. rembg's row needs rembg installed; without it the bar on fast uses the
published figures only.

    python benchmarks/quality.py --limit 10 --no-write   # a quick look, about half a minute
    python benchmarks/quality.py                          # all 110 images, rewrites BENCHMARKS.md

The evaluation data is read from ../shared/eval next to the repository (--eval-dir or
$BGREMOVE_EVAL_DIR to point elsewhere); it is never copied into the project.
Rewrites the `quality` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bgremove  # noqa: E402
from benchmarks.sections import cpu, write_section  # noqa: E402
from bgremove.backends.local import LocalSession  # noqa: E402
from bgremove.models import BUNDLED, resolve  # noqa: E402
from bgremove.options import Mode, OutputFormat, RemovalOptions  # noqa: E402

# The bars of issue 2: rembg 2.0.86 with u2netp on this split (shared/eval/README.md).
REFERENCE_MAXF, REFERENCE_MAE = 0.837, 0.118
MAX_COST_RATIO = 3.0
# What balanced and quality must gain over fast on sod-dev (maxF up, MAE down), on top of being
# no worse on any fold and on GT01. Quality's are the held-out gains (0.858 / 0.115
# against fast's 0.8513 / 0.1185): on photos nobody tuned on, with a margin left for that.
GAINS = {"balanced": (0.0, 0.0), "quality": (0.007, 0.0035)}
THRESHOLDS = 256
REFERENCE = "rembg u2netp (reference)"
FOLDS, SEED = 5, 14  # sod-dev's folds, shared with scripts/tune_quality.py


# --- metrics -------------------------------------------------------------------------------------


def alpha_at(alpha8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Alpha in [0, 1] at the ground truth's (width, height): the protocol reads it there."""
    if (alpha8.shape[1], alpha8.shape[0]) != size:
        alpha8 = np.asarray(Image.fromarray(alpha8).resize(size, Image.Resampling.BILINEAR))
    return alpha8.astype(np.float64) / 255.0


@dataclass
class SodScore:
    """Accumulates per-image precision/recall curves and absolute errors over a set."""

    precision: list[np.ndarray] = field(default_factory=list)
    recall: list[np.ndarray] = field(default_factory=list)
    mae: list[float] = field(default_factory=list)

    def add(self, alpha: np.ndarray, gt: np.ndarray) -> None:
        """alpha in [0, 1]; gt boolean, both at the mask's size."""
        self.mae.append(float(np.abs(alpha - gt).mean()))
        # Threshold t in 0..255 keeps pixels with alpha*255 >= t: count them by histogram, from
        # the top, once for ground-truth foreground and once for background.
        level = np.clip(np.round(alpha * 255.0), 0, 255).astype(np.int64)
        fg = np.bincount(level[gt], minlength=THRESHOLDS)[::-1].cumsum()[::-1]
        bg = np.bincount(level[~gt], minlength=THRESHOLDS)[::-1].cumsum()[::-1]
        kept = fg + bg
        self.precision.append(np.where(kept > 0, fg / np.maximum(kept, 1), 0.0))
        self.recall.append(fg / max(int(gt.sum()), 1))

    def max_f(self) -> float:
        p = np.mean(self.precision, axis=0)
        r = np.mean(self.recall, axis=0)
        f = 1.3 * p * r / np.maximum(0.3 * p + r, 1e-12)
        return float(f.max())

    def mean_abs_error(self) -> float:
        return float(np.mean(self.mae))

    def subset(self, indices: np.ndarray) -> SodScore:
        return SodScore([self.precision[i] for i in indices], [self.recall[i] for i in indices],
                        [self.mae[i] for i in indices])


def folds(count: int, k: int = FOLDS, seed: int = SEED) -> list[np.ndarray]:
    """k disjoint folds of the image indices, shuffled with a fixed seed: the same split
    scripts/tune_quality.py cross-validates on."""
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(order[j::k]) for j in range(k)]


def matte_errors(alpha: np.ndarray, gt: np.ndarray, unknown: np.ndarray) -> dict[str, float]:
    """SAD (in thousands) and MSE of a soft matte, over the image and inside the unknown region."""
    diff = alpha - gt
    return {
        "sad": float(np.abs(diff).sum() / 1000.0),
        "mse": float((diff**2).mean()),
        "sad_unknown": float(np.abs(diff[unknown]).sum() / 1000.0),
        "mse_unknown": float((diff[unknown] ** 2).mean()),
    }


# --- the pipelines under test --------------------------------------------------------------------


def read_alpha(png: bytes) -> np.ndarray:
    image = Image.open(BytesIO(png))
    if image.mode != "RGBA":
        raise SystemExit(f"expected an RGBA cut-out, got {image.mode}")
    return np.asarray(image)[:, :, 3]


def bgremove_pipeline(backend: LocalSession, mode: Mode) -> Callable[[bytes], np.ndarray]:
    options = RemovalOptions(mode=mode, output_format=OutputFormat.png, include_mask=True)
    return lambda data: read_alpha(backend.process(data, options).data)


def rembg_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("rembg") is not None


def rembg_model() -> Path:
    """The file rembg itself downloads, from ../shared/models when it is there; else the bundled
    model, the same weights with symbolic dimensions (identical outputs at 320 px:
    tests/test_bundled_model.py)."""
    original = ROOT.parent / "shared" / "models" / "u2netp.onnx"
    return original if original.is_file() else resolve(BUNDLED)[1]


def rembg_pipeline(model_home: Path) -> Callable[[bytes], np.ndarray]:
    """rembg's own remove() with u2netp. U2NET_HOME points at a copy of the model, so rembg finds
    `u2netp.onnx` there and never downloads."""
    os.environ["U2NET_HOME"] = str(model_home)
    from rembg import new_session, remove

    session = new_session("u2netp")
    return lambda data: read_alpha(remove(data, session=session))


# --- the run -------------------------------------------------------------------------------------


def default_eval_dir() -> Path:
    return Path(os.environ.get("BGREMOVE_EVAL_DIR") or ROOT.parent / "shared" / "eval")


def sod_pairs(eval_dir: Path, limit: int | None) -> list[tuple[Path, Path]]:
    gt_dir = eval_dir / "sod-dev" / "gt"
    pairs = []
    for image in sorted((eval_dir / "sod-dev" / "images").iterdir()):
        gt = gt_dir / (image.stem + ".png")
        if gt.is_file():
            pairs.append((image, gt))
    if not pairs:
        raise SystemExit(f"no image/mask pairs in {eval_dir / 'sod-dev'}")
    return pairs[:limit] if limit else pairs


@dataclass
class Row:
    name: str
    run: Callable[[bytes], np.ndarray]
    sod: SodScore = field(default_factory=SodScore)
    seconds: list[float] = field(default_factory=list)
    matte: dict[str, float] = field(default_factory=dict)


def timed(row: Row, data: bytes) -> np.ndarray:
    started = time.perf_counter()
    alpha8 = row.run(data)
    row.seconds.append(time.perf_counter() - started)
    return alpha8


def measure(rows: list[Row], eval_dir: Path, limit: int | None) -> int:
    pairs = sod_pairs(eval_dir, limit)
    for row in rows:  # warm-up: first-call allocations and lazy initialisation are not timed
        row.run(pairs[0][0].read_bytes())
    for n, (image_path, gt_path) in enumerate(pairs, 1):
        data = image_path.read_bytes()
        gt_image = Image.open(gt_path).convert("L")
        gt = np.asarray(gt_image) > 127
        # The pipelines take turns on each image, so load from other work on the machine falls
        # on all of them alike.
        for row in rows:
            row.sod.add(alpha_at(timed(row, data), gt_image.size), gt)
        if sys.stderr.isatty():
            print(f"\r  sod-dev {n}/{len(pairs)}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)

    gt01 = eval_dir / "alphamatting-gt01"
    data = (gt01 / "image.png").read_bytes()
    gt_image = Image.open(gt01 / "alpha.png").convert("L")
    gt = np.asarray(gt_image, dtype=np.float64) / 255.0
    unknown = np.asarray(Image.open(gt01 / "trimap.png").convert("L")) == 128
    for row in rows:
        row.matte = matte_errors(alpha_at(row.run(data), gt_image.size), gt, unknown)
    return len(pairs)


def table(rows: list[Row]) -> str:
    fast = np.mean(next(r for r in rows if r.name == "fast").seconds)
    lines = [
        "| pipeline | sod-dev maxF ↑ | sod-dev MAE ↓ | folds maxF (mean ± sd) | folds MAE "
        "(mean ± sd) | GT01 SAD ↓ | GT01 MSE ↓ | GT01 SAD unknown ↓ | GT01 MSE unknown ↓ "
        "| s/image | × fast |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = float(np.mean(r.seconds))
        m = r.matte
        f, mae = fold_scores(r)
        lines.append(
            f"| {r.name} | {r.sod.max_f():.4f} | {r.sod.mean_abs_error():.4f} "
            f"| {f.mean():.4f} ± {f.std():.4f} | {mae.mean():.4f} ± {mae.std():.4f} "
            f"| {m['sad']:.2f} | {m['mse']:.4f} | {m['sad_unknown']:.2f} | {m['mse_unknown']:.4f} "
            f"| {s:.3f} | {s / fast:.2f} |"
        )
    return "\n".join(lines)


def fold_scores(row: Row) -> tuple[np.ndarray, np.ndarray]:
    """maxF and MAE on each of sod-dev's folds."""
    parts = [row.sod.subset(fold) for fold in folds(len(row.sod.mae))]
    return np.array([p.max_f() for p in parts]), np.array([p.mean_abs_error() for p in parts])


def fold_table(rows: list[Row]) -> str:
    """Each pipeline's maxF / MAE fold by fold, and its gain over fast on each fold."""
    fast_f, fast_mae = fold_scores(next(r for r in rows if r.name == "fast"))
    count = len(fast_f)
    lines = ["| pipeline | " + " | ".join(f"fold {k + 1}" for k in range(count))
             + " | gain over fast, mean ± sd (min) |",
             "|---|" + "---:|" * (count + 1)]
    for r in rows:
        f, mae = fold_scores(r)
        cells = [f"{a:.4f} / {b:.4f}" for a, b in zip(f, mae, strict=True)]
        gain = "" if r.name == "fast" else (
            f"maxF {np.mean(f - fast_f):+.4f} ± {np.std(f - fast_f):.4f} "
            f"({np.min(f - fast_f):+.4f}), MAE {np.mean(mae - fast_mae):+.4f} ± "
            f"{np.std(mae - fast_mae):.4f} ({np.max(mae - fast_mae):+.4f})")
        lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines)


def verdict(rows: list[Row]) -> str:
    by = {r.name: r for r in rows}
    fast = by["fast"]
    fast_f, fast_mae = fast.sod.max_f(), fast.sod.mean_abs_error()
    parts = []
    ref = by.get(REFERENCE)
    ref_f, ref_mae = (ref.sod.max_f(), ref.sod.mean_abs_error()) if ref else (None, None)
    # Matched against rembg measured in this run (when it is installed), and against the eval
    # README's figures at the precision they are given in.
    ok = (round(fast_f, 3) >= REFERENCE_MAXF and round(fast_mae, 3) <= REFERENCE_MAE
          and (ref is None or (fast_f >= ref_f and fast_mae <= ref_mae)))
    alongside = (f" vs {ref_f:.4f} measured alongside and" if ref else "")
    alongside_mae = (f" vs {ref_mae:.4f} and" if ref else " vs")
    parts.append(
        f"fast at least matches rembg's u2netp: {'met' if ok else 'NOT met'} (maxF {fast_f:.4f}"
        f"{alongside} {REFERENCE_MAXF} published; MAE {fast_mae:.4f}{alongside_mae}"
        f" {REFERENCE_MAE})"
    )
    fast_gt01 = fast.matte["sad"], fast.matte["sad_unknown"]
    for name, (gain_f, gain_mae) in GAINS.items():
        r = by[name]
        f, mae = r.sod.max_f(), r.sod.mean_abs_error()
        folds_f, folds_mae = fold_scores(r)
        ff, fm = fold_scores(fast)
        sod_ok = f >= fast_f + gain_f - 1e-4 and mae <= fast_mae - gain_mae
        # maxF to 4 decimals, as reported: steepening moves a few pixels across thresholds
        every_fold = bool(np.all(folds_f >= ff - 1e-4) and np.all(folds_mae <= fm))
        # GT01 whole-image SAD within 1% of fast's: the soft-matte guard the tuning used.
        soft_ok = r.matte["sad"] <= fast_gt01[0] * 1.01
        # Balanced must be no worse than fast anywhere, so on every fold too; quality's gain is
        # an average one (its bar is a mean over photos) and the folds show its spread.
        met = sod_ok and soft_ok and (every_fold or name == "quality")
        parts.append(
            f"{name} at least fast + {gain_f:g} maxF and fast - {gain_mae:g} MAE on sod-dev"
            f"{', no worse than fast on any fold' if name != 'quality' else ''}, and no worse "
            f"on GT01 (SAD within 1%): {'met' if met else 'NOT met'} (maxF "
            f"{f:.4f} vs {fast_f:.4f}, MAE {mae:.4f} vs {fast_mae:.4f}; every fold: "
            f"{'yes' if every_fold else 'no'}; GT01 SAD {r.matte['sad']:.2f} vs "
            f"{fast_gt01[0]:.2f}, in unknown {r.matte['sad_unknown']:.2f} vs {fast_gt01[1]:.2f})"
        )
    ratio = np.mean(by["quality"].seconds) / np.mean(fast.seconds)
    met = "met" if ratio <= MAX_COST_RATIO else "NOT met"
    parts.append(f"quality at most {MAX_COST_RATIO:g}× fast: {met} ({ratio:.2f}×)")
    return "Bars: " + "; ".join(parts) + "."


def machine() -> str:
    return f"{cpu()}, no GPU"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return (
        f"bgremove {bgremove.__version__}, Python {platform.python_version()}, onnxruntime "
        f"{of('onnxruntime')}, numpy {np.__version__}, Pillow {of('pillow')}, rembg {of('rembg')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=default_eval_dir(),
                        help="folder with sod-dev/ and alphamatting-gt01/ (default ../shared/eval)")
    parser.add_argument("--limit", type=int, help="only the first N sod-dev images")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args()

    backend = LocalSession()
    with tempfile.TemporaryDirectory() as home:
        rows = [Row(mode.value, bgremove_pipeline(backend, mode)) for mode in Mode]
        if rembg_installed():
            shutil.copy(rembg_model(), Path(home) / "u2netp.onnx")
            rows.append(Row(REFERENCE, rembg_pipeline(Path(home))))
        else:
            print("rembg is not installed: no reference row (pip install rembg to add it)",
                  file=sys.stderr)
        count = measure(rows, args.eval_dir, args.limit)

    result, by_fold = table(rows), fold_table(rows)
    bars = verdict(rows)
    print(result)
    print()
    print(by_fold)
    print(bars)
    if not args.no_write:
        write(args, count, rows, result, by_fold, bars)
    if "NOT met" in bars:
        raise SystemExit("a bar is not met (above)")


def write(args: argparse.Namespace, count: int, rows: list[Row], result: str, by_fold: str,
          bars: str) -> None:
    if args.limit:
        raise SystemExit("not writing BENCHMARKS.md from a --limit run (add --no-write)")
    reference = (
        "the reference row is `rembg.remove` with rembg's own u2netp file, run alongside"
        if any(r.name == REFERENCE for r in rows) else
        "rembg was not installed for this run, so there is no reference row (the bar on fast "
        "uses the published figures only)"
    )
    write_section(
        "quality",
        f"Quality, measured {datetime.date.today().isoformat()} by `benchmarks/quality.py` on "
        f"{machine()}; {versions()}.\n\n"
        f"sod-dev: {count} photos with human salient-object masks (maxF, MAE: the U²-Net paper's "
        "protocol); GT01: the alphamatting.com training matte (SAD/1000, MSE, over the image and "
        "inside the trimap's unknown region). Scored is the alpha of the PNG the local backend "
        f"writes (defaults: smooth edges on, no shadows); {reference}. Seconds per image: mean "
        "over sod-dev, bytes in to PNG bytes out, on all cores.\n\n"
        f"{result}\n\n"
        f"The same scores on each of sod-dev's {FOLDS} folds (a fixed shuffle, seed {SEED}, the "
        "split `scripts/tune_quality.py` cross-validates on), maxF / MAE:\n\n"
        f"{by_fold}\n\n{bars}"
    )
    print("wrote the quality section of BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
