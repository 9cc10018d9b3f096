"""Batched inference (for GPUs): the images in flight share model runs, and every image gets
exactly the map it would get alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

import bgremove
from bgremove.backends.local import LocalSession


def photos(samples):
    names = sorted(p for p in samples.iterdir() if p.suffix != ".md")
    # Three of three sizes (astronaut, chelsea, rocket): the model's work is the same at any size
    # (its 320-px square, and a 384-px view in quality mode), so the count sets the time.
    return [np.asarray(Image.open(p).convert("RGB")) for p in names[::2]]


def test_batched_maps_equal_single_runs_in_every_mode(samples):
    images = photos(samples)
    single = LocalSession(device="cpu", threads=1, batch=False)
    batched = LocalSession(device="cpu", threads=1, batch=True)
    start = threading.Barrier(len(images))

    def both(image):
        start.wait()  # all at once, so that runs are shared
        return [(single.remove(image, mode=mode), batched.remove(image, mode=mode))
                for mode in ("fast", "quality")]

    with ThreadPoolExecutor(len(images)) as pool:
        results = list(pool.map(both, images))
    for pairs in results:
        for alone, together in pairs:
            diff = np.abs(np.asarray(alone, np.int16) - np.asarray(together, np.int16))
            assert diff.max() <= 1  # float rounding of a batched convolution at most
    batcher = batched.batcher
    assert batcher.inputs == len(images) * (1 + 3)  # fast: one input; quality: three views
    assert batcher.batches < batcher.inputs  # runs were shared
    batched.close()


def test_batching_is_on_only_where_it_pays():
    session = bgremove.new_session(device="cpu")
    assert session.batcher is None  # on the CPU every core already has an image
    assert session.segmenter.batches  # the bundled model takes a batch of N
