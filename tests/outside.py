"""Test data kept outside the repository, in a `shared/` folder next to the checkout.

Two things are not in the repository and never will be: rembg's original `u2netp.onnx` (the
package ships a relabelled copy; the original is only needed to prove the two agree) and the
photos with human-made ground truth that the quality tests score against (their licences allow
research use, not redistribution). The maintainers' machines and CI keep them in `../shared/`;
a plain clone does not have them, and the few tests that need them are skipped with a message
that says what is missing and where it was looked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT

SHARED = ROOT.parent / "shared"
ORIGINAL_MODEL = SHARED / "models" / "u2netp.onnx"
EVAL = SHARED / "eval"


def original_model() -> Path:
    """rembg's own u2netp.onnx, or skip."""
    if not ORIGINAL_MODEL.is_file():
        pytest.skip(f"rembg's original u2netp.onnx is not at {ORIGINAL_MODEL}: this test compares "
                    "the bundled model with it, and it is kept outside the repository (download "
                    "it from rembg's v0.0.0 release into that folder to run the test)")
    return ORIGINAL_MODEL


def ground_truth(name: str, what: str) -> Path:
    """A folder of photos with human-made ground truth under ../shared/eval, or skip."""
    path = EVAL / name
    if not path.exists():
        pytest.skip(f"{what} ({name}) is not at {path}: this test scores the mattes against it, "
                    "and it is kept outside the repository (its licence does not allow "
                    "redistribution)")
    return path
