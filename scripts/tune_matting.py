"""Choose quality mode's matting constants by cross-validation, and measure the methods that lost.

    python scripts/tune_quality.py views     # sod-dev's model views, cached (once)
    python scripts/tune_matting.py views     # the soft mattes' model views, cached
    python scripts/tune_matting.py cv        # every candidate on every image, then the folds
    python scripts/tune_matting.py cv --write   # ... and the "matting" section of BENCHMARKS.md

Two sets, both held out by folds: sod-dev (110 photos, binary salient-object masks: maxF, MAE;
its 5 folds of benchmarks/quality.py) and 21 real soft mattes (SAD/1000 over the image and on the
soft pixels, 0.02 < alpha < 0.98): GT01 from ../shared/eval and the other 20 low-resolution
training images of the alphamatting.com benchmark (Rhemann et al., CVPR 2009: toys with hair,
fur and fluff, plants, a wicker ball, a wire-mesh cup, yarn; their alpha measured in the lab,
not drawn). The benchmark hands them out for research, with no licence file; they are read from
$BGREMOVE_SOFT_DIR (default .bench/softsets/alphamatting_training_lowres, one folder per image
with image.png and alpha.png), never copied into the project. Adobe's Composition-1k test
images are held out for the project's reviewers and are not used here.

A grid of matting constants is scored on every image once; on each fold the constants with the
best score on the other four folds of both sets are picked (the soft pixels' SAD and sod-dev's
MAE, each relative to quality's fusion without matting, summed: a 1% gain on one pays for a 1%
loss on the other; maxF no more than 0.002 below the fusion's) and scored on the held-out fold.
The other methods run with the shipped constants and the same trimap, so only the solver or the
way back to full size differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import SodScore  # noqa: E402
from benchmarks.quality import folds as make_folds  # noqa: E402
from bgremove.imaging import matting, multiscale  # noqa: E402
from bgremove.imaging.filters import resize  # noqa: E402
from bgremove.imaging.matte import (  # noqa: E402
    STEEPNESS_ABOVE,
    STEEPNESS_BELOW,
    finish_edges,
    steepen_split,
)

CACHE = ROOT / ".bench" / "views"
RESULTS = ROOT / ".bench" / "matting"
EVAL = Path(os.environ.get("BGREMOVE_EVAL_DIR") or ROOT.parent / "shared" / "eval")
SOFT = Path(os.environ.get("BGREMOVE_SOFT_DIR")
            or ROOT / ".bench" / "softsets" / "alphamatting_training_lowres")
FOLDS, SEED = 5, 14


@dataclass
class Item:
    name: str
    rgb: np.ndarray
    gt: np.ndarray  # sod: bool mask; soft: alpha in [0, 1]
    views: dict[str, np.ndarray]  # the model's raw maps: s320, s320m, a384
    soft: bool = False
    _fused: dict[str, np.ndarray] = field(default_factory=dict)

    def coarse(self) -> np.ndarray:
        """Fast mode's map at the image's size."""
        raw = self.views["s320"]
        lo, hi = float(raw.min()), float(raw.max())
        height, width = self.gt.shape
        return resize(np.asarray((raw - lo) / max(hi - lo, 1e-6), dtype=np.float32),
                      (width, height))

    def fused(self, holes: bool = True) -> np.ndarray:
        """Quality's fused map as the product makes it, from the cached views."""
        key = f"holes={holes}"
        if key not in self._fused:
            enclosed = multiscale.enclosed
            if not holes:  # bgremove 0.3's fusion, which filled them
                multiscale.enclosed = np.zeros_like
            try:
                self._fused[key] = multiscale.quality_alpha(Views(self), self.rgb)
            finally:
                multiscale.enclosed = enclosed
        return self._fused[key]


class Views:
    """A segmenter that answers with cached maps (the model ran once, in `views`)."""

    any_size, side = True, 320

    def __init__(self, item: Item):
        self.item = item

    def prepare(self, rgb: np.ndarray, size: tuple[int, int] | None = None):
        return (rgb, size)

    def run(self, batch):
        rgb, size = batch
        views = self.item.views
        if size is not None:
            return views["a384"][None]
        # quality_alpha passes the photo, then its mirror image (which it flips back)
        return (views["s320"] if rgb is self.item.rgb else views["s320m"][:, ::-1])[None]


def soft_dirs() -> list[tuple[str, Path]]:
    out = [("GT01", EVAL / "alphamatting-gt01")]
    if SOFT.is_dir():
        out += [(d.name, d) for d in sorted(SOFT.iterdir()) if (d / "alpha.png").is_file()]
    return out


def views_command() -> None:
    from bgremove.backends.local import OnnxSaliency
    from bgremove.models import BUNDLED_PATH

    model = OnnxSaliency(BUNDLED_PATH)
    for name, folder in soft_dirs():
        path = CACHE / "matting" / f"{name}.npz"
        if path.exists():
            continue
        rgb = np.asarray(Image.open(folder / "image.png").convert("RGB"))
        gt = np.asarray(Image.open(folder / "alpha.png").convert("L"), dtype=np.float32) / 255
        height, width = gt.shape
        mirrored = np.ascontiguousarray(rgb[:, ::-1])
        maps = {"s320": model.predict_raw(rgb), "s320m": model.predict_raw(mirrored)[:, ::-1],
                "a384": model.predict_raw(rgb, multiscale.fine_size(width, height))}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, rgb=rgb, gt=gt, **maps)
        print(f"  {name}", file=sys.stderr)


def load() -> tuple[list[Item], list[Item]]:
    def read(path: Path, soft: bool) -> Item:
        with np.load(path) as z:
            views = {k: z[k] for k in ("s320", "s320m", "a384")}
            return Item(path.stem, z["rgb"], z["gt"], views, soft)

    sod = [read(p, False) for p in sorted((CACHE / "sod").glob("*.npz"))]
    soft = [read(p, True) for p in sorted((CACHE / "matting").glob("*.npz"))]
    if not sod or not soft:
        raise SystemExit("no cached views: run `scripts/tune_quality.py views` and "
                         "`scripts/tune_matting.py views` first")
    return sod, soft


# --- candidates: item -> alpha at the item's size, before finish_edges ---------------------------


def with_constants(constants: dict[str, float], run: Callable[[], np.ndarray]) -> np.ndarray:
    saved = {k: getattr(matting, k) for k in constants}
    try:
        for k, v in constants.items():
            setattr(matting, k, v)
        return run()
    finally:
        for k, v in saved.items():
            setattr(matting, k, v)


def shipped(item: Item, **constants: float) -> np.ndarray:
    return with_constants(constants, lambda: matting.refine(item.rgb, item.fused()))


def other_solver(name: str) -> Callable[[Item], np.ndarray]:
    """The same trimap and the same way back to full size, another solver at the working size
    (pymatting's, which rembg's alpha matting uses: needs pymatting, which needs numba)."""
    import pymatting

    solver = getattr(pymatting, f"estimate_alpha_{name}")

    def run(item: Item) -> np.ndarray:
        fused = item.fused()
        band = matting.trimap(item.rgb, fused)
        if not (band.fg.any() and band.bg.any()):
            return fused  # pymatting needs both; nothing to propagate from anyway
        tri = np.where(band.fg, 1.0, np.where(band.bg, 0.0, 0.5))
        solved = np.clip(solver(band.image.astype(np.float64), tri), 0, 1).astype(np.float32)
        return matting.upsample(matting.MattingLaplacian(band.image), solved, band, item.rgb,
                                fused)

    return run


def full_size_cf(item: Item) -> np.ndarray:
    """pymatting's closed-form solve on the full-size photo (rembg's `-a` path), same trimap."""
    from pymatting import estimate_alpha_cf

    fused = item.fused()
    band = matting.trimap(item.rgb, fused)
    height, width = fused.shape
    fg = resize(band.fg.astype(np.float32), (width, height)) > 0.999
    bg = resize(band.bg.astype(np.float32), (width, height)) > 0.999
    if not (fg.any() and bg.any()):
        return fused
    tri = np.where(fg, 1.0, np.where(bg, 0.0, 0.5))
    return np.clip(estimate_alpha_cf(item.rgb / 255.0, tri), 0, 1).astype(np.float32)


def bilinear_back(item: Item) -> np.ndarray:
    """The shipped solve, resized back up bilinearly (no colour coefficients)."""
    fused = item.fused()
    band = matting.trimap(item.rgb, fused)
    _, solved = matting.solve_band(band)
    height, width = fused.shape
    inside = resize(band.unknown.astype(np.float32), (width, height))
    return inside * resize(solved, (width, height)) + (1 - inside) * fused


def guided_only(item: Item) -> np.ndarray:
    """No solve: the fused map's own window coefficients (a guided filter of it) brought back."""
    fused = item.fused()
    band = matting.trimap(item.rgb, fused)
    return matting.upsample(matting.MattingLaplacian(band.image), band.alpha, band, item.rgb,
                            fused)


def steepened(item: Item) -> np.ndarray:
    """The shipped matte, steepened by 1.6 about 0.45 in the band (what sod-dev's binary masks
    prefer)."""
    fused = item.fused()
    out = matting.refine(item.rgb, fused)
    band = out != fused
    out[band] = np.clip((out[band] - 0.45) * 1.6 + 0.5, 0, 1)
    return out


GRID = [dict(zip(("SEPARATION", "BAND_TEXTURED", "TEXTURE", "PRIOR_WEIGHT"), v, strict=True))
        for v in product((1.0, 3.0, 6.0), (0.02, 0.04), (0.01, 0.02), (0.01, 0.03))]
GRID += [{"WORK_SIDE": w} for w in (160, 400)]


def candidates() -> dict[str, Callable[[Item], np.ndarray]]:
    out: dict[str, Callable[[Item], np.ndarray]] = {
        "fast": Item.coarse,
        "balanced": lambda it: steepen_split(it.coarse(), STEEPNESS_ABOVE, STEEPNESS_BELOW),
        "quality 0.3 (fusion, holes filled)": lambda it: it.fused(holes=False),
        "fusion, holes kept": Item.fused,
        "**quality: fusion, holes kept, matting (shipped)**": shipped,
    }
    for constants in GRID:
        out["matting " + json.dumps(constants)] = (
            lambda it, c=constants: shipped(it, **c))
    out["other: guided filter of the fused map, no solve"] = guided_only
    out["other: shipped solve, resized back up bilinearly"] = bilinear_back
    out["other: shipped matte steepened (1.6 about 0.45)"] = steepened
    for name in ("knn", "lkm"):  # random walk ("rw") did not converge in 10,000 iterations
        out[f"other: pymatting {name} at the working size"] = other_solver(name)
    out["other: pymatting closed-form on the full-size photo (rembg -a's solver)"] = full_size_cf
    return out


# --- scores --------------------------------------------------------------------------------------


def product_alpha(alpha: np.ndarray) -> np.ndarray:
    """What the PNG carries: smooth edges finished, 8 bits; back in [0, 1]."""
    a8 = (finish_edges(np.asarray(alpha, dtype=np.float32), True) * 255.0 + 0.5).astype(np.uint8)
    return a8.astype(np.float64) / 255.0


@dataclass
class Scores:
    sod: SodScore | None  # None: not run on sod-dev (too slow)
    soft_total: np.ndarray  # per soft image, SAD/1000
    soft_pixels: np.ndarray  # per soft image, SAD/1000 on 0.02 < truth < 0.98
    seconds: float  # per image, mean over both sets (the model's views excluded)


def score(run: Callable[[Item], np.ndarray], sod: list[Item], soft: list[Item]) -> Scores:
    sod_score: SodScore | None = SodScore() if sod else None
    totals, pixels, elapsed = [], [], 0.0
    for item in sod + soft:
        started = time.perf_counter()
        alpha = product_alpha(run(item))
        elapsed += time.perf_counter() - started
        if item.soft:
            error = np.abs(alpha - item.gt)
            totals.append(error.sum() / 1000)
            pixels.append(error[(item.gt > 0.02) & (item.gt < 0.98)].sum() / 1000)
        elif sod_score is not None:
            sod_score.add(alpha, item.gt.astype(bool))
    return Scores(sod_score, np.array(totals), np.array(pixels), elapsed / len(sod + soft))


def cached_scores(name: str, run, sod, soft) -> Scores:
    key = hashlib.sha256((name + Path(matting.__file__).read_text()).encode()).hexdigest()[:16]
    path = RESULTS / f"{key}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    # pymatting's full-size solve takes seconds per photo: the soft mattes only
    result = score(run, [] if "full-size photo" in name else sod, soft)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


def objective(s: Scores, base: Scores, sod_idx: np.ndarray, soft_idx: np.ndarray) -> float:
    """Lower is better: soft pixels' SAD and sod-dev's MAE relative to the fusion's, summed."""
    mae, base_mae = (x.subset(sod_idx).mean_abs_error() for x in (s.sod, base.sod))
    return s.soft_pixels[soft_idx].sum() / base.soft_pixels[soft_idx].sum() + mae / base_mae


def cross_validate(results: dict[str, Scores], sod_n: int, soft_n: int) -> dict:
    base = results["fusion, holes kept"]
    grid = [k for k in results if k.startswith("matting ")]
    sod_folds, soft_folds = make_folds(sod_n, FOLDS, SEED), make_folds(soft_n, FOLDS, SEED)
    picks, held = [], {"soft_total": np.zeros(soft_n), "soft_pixels": np.zeros(soft_n),
                       "folds": []}
    for sod_test, soft_test in zip(sod_folds, soft_folds, strict=True):
        sod_train = np.setdiff1d(np.arange(sod_n), sod_test)
        soft_train = np.setdiff1d(np.arange(soft_n), soft_test)
        floor = base.sod.subset(sod_train).max_f() - 0.002
        allowed = [k for k in grid if results[k].sod.subset(sod_train).max_f() >= floor] or grid
        best = min(allowed, key=lambda k: objective(results[k], base, sod_train, soft_train))
        picks.append(best)
        r = results[best]
        held["soft_total"][soft_test] = r.soft_total[soft_test]
        held["soft_pixels"][soft_test] = r.soft_pixels[soft_test]
        part = r.sod.subset(sod_test)
        held["folds"].append((part.max_f(), part.mean_abs_error()))
    held["picks"] = picks
    return held


# --- the report ----------------------------------------------------------------------------------


def rows_table(results: dict[str, Scores], held: dict) -> str:
    fast = results["fast"]
    lines = ["| pipeline | sod-dev maxF ↑ | sod-dev MAE ↓ | soft SAD ↓ | soft SAD on soft pixels ↓ "
             "| soft pixels better than fast | ms/image (model excluded) |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def line(name: str, f: float, mae: float, total: np.ndarray, pixels: np.ndarray,
             ms: str) -> str:
        better = int((pixels < fast.soft_pixels).sum())
        wins = "" if name == "fast" else f"{better} of {len(pixels)}"
        return (f"| {name} | {f:.4f} | {mae:.4f} | {total.sum():.1f} | {pixels.sum():.1f} "
                f"| {wins} | {ms} |")

    for name, r in results.items():
        if name.startswith("matting "):
            continue
        f, mae = (r.sod.max_f(), r.sod.mean_abs_error()) if r.sod else (np.nan, np.nan)
        lines.append(line(name, f, mae, r.soft_total, r.soft_pixels,
                          f"{r.seconds * 1000:.0f}").replace("| nan ", "| – "))
    f, mae = np.array(held["folds"]).T
    lines.append(line("**matting, held out by folds** (constants picked on the other folds)",
                      f.mean(), mae.mean(), held["soft_total"], held["soft_pixels"], ""))
    return "\n".join(lines)


def cv_command(write: bool, part: str | None) -> None:
    sod, soft = load()
    print(f"{len(sod)} sod-dev photos, {len(soft)} soft mattes", file=sys.stderr)
    results = {}
    for n, (name, run) in enumerate(candidates().items()):
        if part:  # "k/n": only every n-th candidate, to fill the cache on n cores
            k, count = map(int, part.split("/"))
            if n % count != k:
                continue
        results[name] = r = cached_scores(name, run, sod, soft)
        sod_text = (f"maxF {r.sod.max_f():.4f} MAE {r.sod.mean_abs_error():.4f}" if r.sod
                    else "(soft mattes only)")
        print(f"{name[:70]:70s} {sod_text} soft {r.soft_total.sum():7.1f} / "
              f"{r.soft_pixels.sum():6.1f} {r.seconds * 1000:6.0f} ms", flush=True)
    if part:
        return
    held = cross_validate(results, len(sod), len(soft))
    table = rows_table(results, held)
    picks = "; ".join(f"fold {k + 1}: {p[len('matting '):]}" for k, p in
                      enumerate(held["picks"]))
    print(table)
    print("picked:", picks)
    if write:
        from benchmarks.sections import write_section

        write_section("matting", section(table, picks, len(sod), len(soft)))
        print("wrote the matting section of BENCHMARKS.md", file=sys.stderr)


def section(table: str, picks: str, sod_n: int, soft_n: int) -> str:
    return (
        f"Cross-validated by `scripts/tune_matting.py cv --write` on {sod_n} sod-dev photos "
        f"and {soft_n} soft mattes (GT01 and the other 20 low-resolution training images of "
        "alphamatting.com, Rhemann et al. 2009: toys with hair and fur, plants, a wicker ball, "
        "a wire-mesh cup, yarn; their alpha measured, handed out by the benchmark for research, "
        "no licence file). Scored is the alpha as the PNG carries it (edges finished, 8 bits), "
        "computed from the model's cached views, so times exclude the model. SAD/1000 summed "
        "over the soft mattes, over the image and on the soft pixels (0.02 < truth < 0.98); "
        "\"better than fast\" counts the mattes whose soft-pixel SAD is below fast's. "
        f"The last row is held out: on each of {FOLDS} folds of both sets the constants were "
        "picked on the other four (soft-pixel SAD and sod-dev MAE relative to the fusion's, "
        "maxF at most 0.002 below it) and scored on the fifth. The \"other\" rows keep the shipped "
        "constants and trimap and change one part.\n\n"
        f"{table}\n\nConstants picked per fold: {picks}.\n\n{REASONS}"
    )


# Why the shipped method, from the rows above (written when they were measured, 2026-12-03).
REASONS = (
    "Why closed-form matting at the working size: of the methods measured it is the one that "
    "lowers the soft pixels' error on 19 of the 21 mattes while keeping sod-dev's maxF within "
    "0.002 of the fusion's, at about 0.1 s a photo in numpy alone. KNN and large-kernel matting "
    "(pymatting) reach lower soft-pixel error but leak into solid subjects (sod-dev maxF and MAE "
    "0.02 to 0.03 worse) and cost 15 to 30 times as much, with numba (208 MB) to install; "
    "pymatting's closed-form solve on the full-size photo, what rembg's `-a` runs, is about as "
    "good on the soft pixels, worse over the image and 30 times slower (a small working size "
    "spreads what is known further across the band); random walk matting did not converge in "
    "10,000 iterations on some photos. A guided filter of the fused map without a solve keeps sod-"
    "dev but less than a third of the soft pixels' gain; resizing the solved band back up "
    "bilinearly instead of through its colour coefficients loses strands. The price is sod-dev's "
    "MAE: soft alpha at an edge is an error against a binary mask, and steepening the matte, which"
    " wins most of that MAE back (0.1144), gives back 40% of the soft gain."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["views", "cv"])
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md's section")
    parser.add_argument("--part", help="k/n: score every n-th candidate only (fills the cache)")
    args = parser.parse_args()
    if args.command == "views":
        views_command()
    else:
        cv_command(args.write, args.part)


if __name__ == "__main__":
    main()
