"""One planner sizes every local session (api.open_local): the library's `remove_batch` runs as
many images at once as the CLI does, on a GPU too. The GPU and the core count are faked here, so
the test runs anywhere: the planner is told of an accelerator, the model itself runs on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove import devices, parallel
from bgremove.batch import Batch


@pytest.fixture
def a_gpu_and_16_cores(monkeypatch):
    monkeypatch.setattr(devices, "place", lambda device="auto": devices.Placement(
        device, [devices.CPU], accelerator="CUDAExecutionProvider"))
    monkeypatch.setattr(parallel, "usable_cores", lambda: 16)
    monkeypatch.setattr(parallel, "available_memory", lambda: 64 << 30)


@pytest.fixture
def workers_run(monkeypatch) -> list[int]:
    """The `workers` every Batch.run is given."""
    seen: list[int] = []
    real = Batch.run

    def run(self, session=None, *, workers=None, **kw):
        seen.append(workers)
        return real(self, session, workers=workers, **kw)

    monkeypatch.setattr(Batch, "run", run)
    return seen


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(folder / name)
    return folder


def test_the_planner_gives_a_gpu_half_the_cores(a_gpu_and_16_cores):
    # parallel.py: half the cores as workers fed the GPU best (8 of 16).
    assert parallel.plan_local(None, None, device="auto") == (8, 1)
    assert parallel.plan_local(None, None, device="auto", images=3) == (3, 1)
    assert parallel.plan_local(4, None, device="auto") == (4, 1)


def test_remove_batch_runs_as_many_images_at_once_as_the_cli(a_gpu_and_16_cores, workers_run,
                                                           photos, tmp_path):
    from bgremove.cli.commands.remove import Job, run
    from bgremove.cli.settings import load

    options = bgremove.RemovalOptions(mode=bgremove.Mode.fast)
    assert bgremove.remove_batch([photos], tmp_path / "lib", options=options).failed is False
    settings = load({"mode": "fast"}, environ={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert run(Job(inputs=[str(photos)], output=str(tmp_path / "cli"), quiet=True),
               settings).failed is False
    assert workers_run == [8, 8]
