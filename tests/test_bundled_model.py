"""The bundled model is rembg's u2netp with symbolic dims: same outputs, any batch and size."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from bgremove.backends.local import OnnxSaliency
from bgremove.models import BUNDLED, BUNDLED_PATH, KNOWN
from bgremove.precision import INT8_PATH
from tests.conftest import ROOT
from tests.outside import original_model

ORIGINAL_MD5 = "8e83ca70e441ab06c318d82300c84806"


@pytest.fixture(scope="module")
def bundled() -> OnnxSaliency:
    return OnnxSaliency(BUNDLED_PATH, threads=1)


@pytest.fixture(scope="module")
def original() -> OnnxSaliency:
    path = original_model()  # kept outside the repository (tests/outside.py)
    assert hashlib.md5(path.read_bytes()).hexdigest() == ORIGINAL_MD5
    return OnnxSaliency(path, threads=1)


def photos(samples) -> list[np.ndarray]:
    return [np.asarray(Image.open(samples / name).convert("RGB"))
            for name in ("coffee.png", "astronaut.jpg")]


def raw(model: OnnxSaliency, batch: np.ndarray) -> np.ndarray:
    (out,) = model.session.run([model.output_name], {model.input_name: batch})
    return out


def test_dimensions_are_symbolic(bundled):
    (model_input,) = bundled.session.get_inputs()
    assert model_input.shape == ["batch", 3, "height", "width"]
    for output in bundled.session.get_outputs():
        assert output.shape == ["batch", 1, "height", "width"]
    assert bundled.side == 320  # fast mode still sees the 320-px square it was trained on


def test_same_outputs_as_rembgs_file_at_320(bundled, original, samples):
    for rgb in photos(samples):
        x = bundled.prepare(rgb)
        assert x.shape == (1, 3, 320, 320)
        np.testing.assert_array_equal(raw(bundled, x), raw(original, x))
        np.testing.assert_array_equal(bundled.predict(rgb), original.predict(rgb))


def test_a_batch_of_two_equals_two_single_runs(bundled, original, samples):
    singles = [bundled.prepare(rgb) for rgb in photos(samples)]
    batched = raw(bundled, np.concatenate(singles))
    assert batched.shape == (2, 1, 320, 320)
    for i, x in enumerate(singles):
        np.testing.assert_allclose(batched[i : i + 1], raw(original, x), rtol=0, atol=1e-5)


def test_runs_at_other_sizes(bundled, samples):
    rgb = photos(samples)[0]
    x = np.asarray(Image.fromarray(rgb).resize((480, 320)), dtype=np.float32) / 255.0
    out = raw(bundled, np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    assert out.shape == (1, 1, 320, 480)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_checksum_documented_everywhere():
    digest = hashlib.sha256(BUNDLED_PATH.read_bytes()).hexdigest()
    assert KNOWN[BUNDLED].checksum == f"sha256:{digest}"
    licence = (BUNDLED_PATH.parent / "LICENSE-u2netp.md").read_text()
    reference = (ROOT / "docs" / "models-and-devices.md").read_text()  # "The bundled model"
    for text in (licence, reference):
        assert digest in text and ORIGINAL_MD5 in text
    # every sha256 the licence note gives is the original's, this file's or its int8 build's
    int8 = hashlib.sha256(INT8_PATH.read_bytes()).hexdigest()
    assert int8 in licence and int8 in reference
    assert len(set(re.findall(r"\b[0-9a-f]{64}\b", licence))) == 3
