"""Relabel the bundled U^2-Netp's input and output dimensions as symbolic: batch, height, width.

rembg's export declares a fixed 1 x 3 x 320 x 320 input and 1 x 1 x 320 x 320 outputs, but the
graph itself is shape-agnostic (its Resize nodes take their sizes from Shape ops, its pools use
ceil mode), so the same weights run a batch of N images at any height and width once the
declared dimensions say so. Only the declarations change: nodes and weights are copied as they
are, and at 320 x 320 the outputs are the original's (tests/test_bundled_model.py checks both).

    python scripts/relabel_model.py ORIGINAL.onnx bgremove/models/u2netp.onnx

Needs the `onnx` package (a development tool only: bgremove itself never imports it). Prints the
md5 of the original (rembg pins 8e83ca70e441ab06c318d82300c84806) and the sha256 of the result,
which bgremove/models/__init__.py, bgremove/models/LICENSE-u2netp.md and
docs/models-and-devices.md record.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

ORIGINAL_MD5 = "8e83ca70e441ab06c318d82300c84806"  # rembg's pin for u2netp.onnx
DIMS = ("batch", "channels", "height", "width")


def relabel(model) -> None:
    """Input N x 3 x H x W and every output N x 1 x H x W, with N, H, W symbolic."""
    tensors = [(t, 3) for t in model.graph.input] + [(t, 1) for t in model.graph.output]
    for tensor, channels in tensors:
        dims = tensor.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise SystemExit(f"{tensor.name}: expected 4 dimensions, got {len(dims)}")
        for index, (dim, label) in enumerate(zip(dims, DIMS, strict=True)):
            dim.Clear()
            if index == 1:
                dim.dim_value = channels
            else:
                dim.dim_param = label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("original", type=Path, help="rembg's u2netp.onnx")
    parser.add_argument("output", type=Path, help="where to write the relabelled model")
    args = parser.parse_args()

    import onnx

    data = args.original.read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    if md5 != ORIGINAL_MD5:
        raise SystemExit(f"{args.original}: md5 {md5}, expected rembg's {ORIGINAL_MD5}")
    model = onnx.load_from_string(data)
    relabel(model)
    onnx.checker.check_model(model)
    out = model.SerializeToString(deterministic=True)
    args.output.write_bytes(out)
    print(f"original md5    {md5}")
    print(f"relabelled      {args.output} ({len(out)} bytes)")
    print(f"sha256          {hashlib.sha256(out).hexdigest()}")


if __name__ == "__main__":
    main()
