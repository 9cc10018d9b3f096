"""Workers and onnxruntime threads are chosen for the machine, and stay settable."""

from __future__ import annotations

import json

import pytest

from bgremove import parallel
from tests.conftest import run_cli


@pytest.mark.parametrize("cores, expected", [(1, (2, 1)), (2, (2, 1)), (3, (3, 1)),
                                             (4, (4, 1)), (8, (4, 2)), (16, (4, 4))])
def test_the_cores_are_split_between_the_images_in_flight(cores, expected):
    assert parallel.plan(None, None, cores=cores) == expected


def test_what_is_asked_for_is_kept_and_the_rest_follows():
    assert parallel.plan(8, None, cores=16) == (8, 2)
    assert parallel.plan(None, 8, cores=16) == (2, 8)
    assert parallel.plan(3, 5, cores=2) == (3, 5)  # oversubscribing is allowed when asked for
    assert parallel.plan(6, None, cores=2) == (6, 1)


def test_a_single_photo_gets_every_core():
    assert parallel.plan(None, None, cores=8, images=1) == (1, 8)
    assert parallel.plan(None, None, cores=8, images=3) == (3, 2)
    assert parallel.plan(None, None, cores=8, images=0) == (1, 8)
    assert parallel.plan(2, None, cores=8, images=1) == (2, 4)  # as asked


def test_remote_work_does_not_follow_the_cores():
    for cores in (2, 64):
        workers, _ = parallel.plan(None, None, local=False, cores=cores)
        assert workers == parallel.REMOTE_WORKERS


def test_usable_cores_is_the_affinity():
    cores = parallel.usable_cores()
    assert cores >= 1
    if hasattr(parallel.os, "sched_getaffinity"):
        assert cores == len(parallel.os.sched_getaffinity(0))


def test_the_report_says_what_ran(tmp_path, samples):
    report = tmp_path / "report.json"
    result = run_cli(str(samples / "chelsea.webp"), str(samples / "coffee.png"), "-o",
                     str(tmp_path / "out"), "--mode", "fast", "--threads", "1",
                     "--report", str(report), "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    options = json.loads(report.read_text())["options"]
    assert options["threads"] == 1
    assert options["workers"] == 2  # as many as the cores allow, but never more than the images
