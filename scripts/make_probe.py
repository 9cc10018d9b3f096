"""Build the int8 guard's probe (bgremove/precision_guard.py): the photo and fp32's map of it.

    python scripts/make_probe.py            # writes bgremove/models/probe.png, probe-fp32.png
    python scripts/make_probe.py --check    # writes nothing; exit 1 unless they are as built

The photo is samples/astronaut.jpg (public domain, samples/README.md) shrunk to 160 x 160 with
Lanczos; the map is the bundled fp32 model's fused output for it, as 8-bit grey. It also prints
how far the shipped int8 build is from that map, the number the guard compares with its bound.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bgremove.models import BUNDLED_PATH  # noqa: E402
from bgremove.precision import INT8_PATH  # noqa: E402
from bgremove.precision_guard import BOUND, PROBE_MAP_PATH, PROBE_PATH, distance  # noqa: E402

SIDE = 160


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 unless the files there are as built")
    args = parser.parse_args()
    from bgremove.backends.local import OnnxSaliency

    with Image.open(ROOT / "samples" / "astronaut.jpg") as photo:
        small = photo.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    probe = png(small)
    with Image.open(io.BytesIO(probe)) as decoded:  # the map of the pixels as the file holds them
        rgb = np.asarray(decoded.convert("RGB"))
    fp32 = OnnxSaliency(BUNDLED_PATH, threads=1)
    stored = np.clip(np.rint(fp32.predict_raw(rgb, (SIDE, SIDE)) * 255.0), 0, 255)
    mask = png(Image.fromarray(stored.astype(np.uint8), "L"))
    if args.check:
        same = PROBE_PATH.read_bytes() == probe and PROBE_MAP_PATH.read_bytes() == mask
        print("same" if same else "DIFFERENT")
        raise SystemExit(0 if same else 1)
    PROBE_PATH.write_bytes(probe)
    PROBE_MAP_PATH.write_bytes(mask)
    off = distance(OnnxSaliency(INT8_PATH, threads=1))
    print(f"{PROBE_PATH.name} {len(probe)} bytes, {PROBE_MAP_PATH.name} {len(mask)} bytes; "
          f"the int8 build's distance {off:.4f} (bound {BOUND})")


if __name__ == "__main__":
    main()
