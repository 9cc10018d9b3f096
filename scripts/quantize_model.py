"""Build the bundled model's int8 version, u2netp-int8.onnx, from the bundled fp32 file.

The recipe (BENCHMARKS.md "precision" has what each part was chosen against):
- the graph converted to opset 13 (per-channel QDQ needs it) and pre-processed as onnxruntime's
  quantisation tools advise;
- static QDQ quantisation: int8 weights per output channel, uint8 activations (asymmetric: with
  signed activations the int8 kernels were slower and the matte worse), ranges by MinMax;
- calibrated on the photos in samples/ and their mirror images, prepared exactly as the product
  prepares its input: nothing from the evaluation set, so every sod-dev photo scores it held out;
- three nodes kept in float: the last convolution of the stage2d decoder, its ReLU and the
  residual Add. One of its output channels has weights below 1e-5 and a folded bias of 1361,
  so the int32 bias overflows at any usable scale; quantised, that one node alone moves the
  matte by 0.09 on average (every other stage moves it by 0.002 or less).

    python scripts/quantize_model.py                 # writes bgremove/models/u2netp-int8.onnx
    python scripts/quantize_model.py --check         # rebuilds and compares with the file there

Needs the `onnx` package (a development tool, as for scripts/relabel_model.py: bgremove never
imports it). The build is deterministic: the same onnxruntime and onnx give the same bytes, whose
sha256 is printed and recorded in bgremove/models/LICENSE-u2netp.md.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bgremove.models import BUNDLED, BUNDLED_PATH, KNOWN  # noqa: E402
from bgremove.precision import INT8_PATH  # noqa: E402

SAMPLES = ROOT / "samples"
FLOAT_NODES = ["Conv_787", "Relu_788", "Add_789"]  # see above: int32 bias overflow
OPSET = 13


def calibration_inputs(fp32: Path) -> list[np.ndarray]:
    """Each sample photo and its mirror image, as the product feeds them to the model."""
    from bgremove.backends.local import OnnxSaliency

    model = OnnxSaliency(fp32, threads=1)
    batches = []
    for photo in sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png", ".webp")):
        rgb = np.asarray(Image.open(photo).convert("RGB"))
        batches += [model.prepare(rgb), model.prepare(np.ascontiguousarray(rgb[:, ::-1]))]
    return batches


def build(fp32: Path, output: Path) -> bytes:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.feeds = iter({name: x} for x in calibration_inputs(fp32))

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        upgraded, prepared, quantised = (Path(tmp) / n for n in ("13.onnx", "pre.onnx", "q.onnx"))
        model = onnx.load(fp32)
        onnx.save(version_converter.convert_version(model, OPSET), upgraded)
        # Symbolic shape inference would need sympy; the graph's own shapes are enough here.
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(quantised), Reader(model.graph.input[0].name),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=FLOAT_NODES, calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(quantised).SerializeToString(deterministic=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=INT8_PATH,
                        help=f"where to write it (default {INT8_PATH.relative_to(ROOT)})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 unless the build equals the file at --output")
    args = parser.parse_args()

    expected = KNOWN[BUNDLED].checksum.removeprefix("sha256:")
    if hashlib.sha256(BUNDLED_PATH.read_bytes()).hexdigest() != expected:
        raise SystemExit(f"{BUNDLED_PATH} is not the bundled model (sha256 {expected})")
    data = build(BUNDLED_PATH, args.output)
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        same = args.output.is_file() and args.output.read_bytes() == data
        print(f"{'same' if same else 'DIFFERENT'}: build sha256 {digest}")
        raise SystemExit(0 if same else 1)
    args.output.write_bytes(data)
    print(f"int8 model      {args.output} ({len(data)} bytes)")
    print(f"sha256          {digest}")


if __name__ == "__main__":
    main()
