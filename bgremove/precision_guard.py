"""The int8 guard: a session that loads the int8 build checks it against fp32 before any photo.

onnxruntime's int8 kernels differ between releases and CPUs (VNNI, AMX, AVX2's saturating
multiply-adds, ARM's dot products), and a broken int8 path gives near-blank or blotchy mattes
without a single error: another project's int8 u2netp did (mean error 0.42). So, once per session,
the int8 model runs on a small bundled probe photo (bgremove/models/probe.png, the astronaut
sample shrunk to 160 x 160: a 320 px run costs four times as much) and its map is compared with
the fp32 model's map of the same input, stored beside it (probe-fp32.png, 8 bits: within 0.002 of
the float map). When they differ by more than BOUND, the session loads the fp32 model instead
and says so once. scripts/make_probe.py builds both files.

BOUND, the mean |int8 - fp32| over the probe's map (0..1), is 0.03. The shipped build is 0.005
from fp32 there (on sod-dev's 110 held-out photos at 320 px: median 0.0034, worst 0.038), so
the bound leaves six times that for kernels that change between onnxruntime releases and CPUs
without changing the matte. The recipe that broke the matte (scripts/quantize_model.py with its
overflowing convolution quantised: sod-dev maxF 0.85 -> 0.72) is 0.24 from it, int8 weights with
5% noise 0.19, and half of them with their signs flipped 0.56. What the check costs at
start-up: BENCHMARKS.md "precision".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bgremove.models import BUNDLED_PATH

if TYPE_CHECKING:
    from bgremove.backends.local import OnnxSaliency

PROBE_PATH = BUNDLED_PATH.with_name("probe.png")
PROBE_MAP_PATH = BUNDLED_PATH.with_name("probe-fp32.png")
BOUND = 0.03


def probe_map(segmenter: OnnxSaliency, probe: Path = PROBE_PATH):
    """The model's fused map of the probe photo, at the probe's own size."""
    import numpy as np
    from PIL import Image

    with Image.open(probe) as image:
        rgb = np.asarray(image.convert("RGB"))
    return segmenter.predict_raw(rgb, (rgb.shape[1], rgb.shape[0]))


def distance(segmenter: OnnxSaliency) -> float:
    """Mean |map - fp32's stored map| over the probe (0..1)."""
    import numpy as np
    from PIL import Image

    with Image.open(PROBE_MAP_PATH) as stored:
        want = np.asarray(stored, dtype=np.float32) * (1.0 / 255.0)
    return float(np.abs(probe_map(segmenter) - want).mean())


def failure(segmenter: OnnxSaliency) -> str | None:
    """Why `segmenter` (the int8 build, loaded) must not be used, or None when it may.
    Raises nothing: a kernel that fails to run is a failure like a wrong map."""
    try:
        off = distance(segmenter)
    except Exception as exc:  # noqa: BLE001 - any error of onnxruntime's kernels means: not this
        return f"it failed on the probe image ({type(exc).__name__}: {exc})"
    if not off <= BOUND:  # NaN too
        return (f"its matte of the probe image differs from fp32's by {off:.3f} on average "
                f"(at most {BOUND} is expected)")
    return None
