"""Quality mode's three views: their sizes, and their fusion computed as tuned."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bgremove.backends.local import LocalSession
from bgremove.imaging import multiscale
from bgremove.imaging.filters import resize


@pytest.fixture(scope="module")
def segmenter():
    return LocalSession(threads=1).segmenter


@pytest.mark.parametrize("size", [(481, 321), (321, 481), (4000, 3000), (600, 400), (50, 2000)])
def test_fine_view_keeps_proportions_in_multiples_of_32(size):
    width, height = size
    w, h = multiscale.fine_size(width, height)
    assert w % 32 == 0 and h % 32 == 0 and max(w, h) == multiscale.FINE_SIDE
    assert abs(w / h - width / height) / (width / height) < 0.2 or min(w, h) == 32


def test_fusion_is_the_tuned_mean_of_three_single_runs(segmenter, samples):
    # The product batches the two squares and mixes before resizing; the tuning script ran each
    # view alone and mixed at full size: the same alpha, up to float rounding.
    rgb = np.asarray(Image.open(samples / "rocket.jpg").convert("RGB"))
    height, width = rgb.shape[:2]
    coarse = segmenter.predict(rgb)
    mirrored = segmenter.predict_raw(np.ascontiguousarray(rgb[:, ::-1]))[:, ::-1]
    fine = segmenter.predict_raw(rgb, multiscale.fine_size(width, height))
    views = [resize(np.asarray(v, dtype=np.float32), (width, height))
             for v in (coarse, mirrored, fine)]
    w = multiscale.COARSE_WEIGHT
    mean = w * views[0] + (1 - w) / 2 * (views[1] + views[2])
    expected = np.clip((mean - multiscale.CENTRE) * multiscale.STEEPNESS + 0.5, 0, 1)
    np.testing.assert_allclose(multiscale.quality_alpha(segmenter, rgb), expected, atol=1e-4)


def test_fusion_keeps_what_all_views_agree_on(segmenter, samples):
    rgb = np.asarray(Image.open(samples / "coffee.png").convert("RGB"))
    alpha = multiscale.quality_alpha(segmenter, rgb)
    assert alpha.shape == rgb.shape[:2] and alpha.dtype == np.float32
    assert alpha[240, 300] == 1.0 and alpha[5, 5] == 0.0  # the cup, the table's corner
