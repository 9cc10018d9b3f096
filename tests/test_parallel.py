"""Workers and onnxruntime threads are chosen for the machine, and stay settable."""

from __future__ import annotations

import json

import pytest

from bgremove import parallel
from tests.conftest import run_cli

GB = 1 << 30


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16])
def test_on_the_cpu_every_core_runs_one_image_with_one_thread(cores):
    # Measured on 2 and 16 cores: N images x 1 thread beats fewer images with more threads.
    assert parallel.plan(None, None, cores=cores, memory=None) == (cores, 1)


def test_with_a_gpu_half_the_cores_feed_it():
    assert parallel.plan(None, None, cores=16, accelerator=True, memory=None) == (8, 1)
    assert parallel.plan(None, None, cores=2, accelerator=True, memory=None) == (2, 1)


def test_memory_caps_the_images_in_flight():
    # 16 cores but 2 GB free: quality mode holds ~1 GB per 4000x4000 photo in flight.
    workers, threads = parallel.plan(None, None, cores=16, mode="quality", memory=2 * GB)
    assert workers == 1 and threads == 16
    assert parallel.plan(None, None, cores=16, mode="fast", memory=2 * GB)[0] == 4
    assert parallel.plan(None, None, cores=16, mode="fast", memory=64 * GB)[0] == 16


def test_what_is_asked_for_is_kept_and_the_rest_follows():
    assert parallel.plan(8, None, cores=16) == (8, 2)
    assert parallel.plan(None, 8, cores=16, memory=None) == (2, 8)
    assert parallel.plan(3, 5, cores=2) == (3, 5)  # oversubscribing is allowed when asked for
    assert parallel.plan(6, None, cores=2) == (6, 1)


def test_a_single_photo_gets_every_core():
    assert parallel.plan(None, None, cores=8, images=1, memory=None) == (1, 8)
    assert parallel.plan(None, None, cores=8, images=3, memory=None) == (3, 2)
    assert parallel.plan(2, None, cores=8, images=1) == (2, 4)  # as asked


def test_remote_work_does_not_follow_the_cores():
    for cores in (2, 64):
        workers, _ = parallel.plan(None, None, remote=True, cores=cores)
        assert workers == parallel.REMOTE_WORKERS


def test_usable_cores_are_within_the_affinity():
    cores = parallel.usable_cores()
    assert cores >= 1
    if hasattr(parallel.os, "sched_getaffinity"):
        assert cores <= len(parallel.os.sched_getaffinity(0))


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000", "job/cpu.max": "250000 100000"}, 2.5),  # --cpus 2.5
    ({"cpu.max": "100000 100000", "job/cpu.max": "max 100000"}, 1.0),  # limited above
    ({"cpu.max": "max 100000", "job/cpu.max": "max 100000"}, None),
])
def test_a_containers_cpu_quota_counts(tmp_path, files, expected):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    proc = tmp_path / "self-cgroup"
    proc.write_text("0::/job\n")
    assert parallel.cgroup_cpu_limit(root, proc) == expected


def test_the_report_says_what_ran(tmp_path, samples):
    report = tmp_path / "report.json"
    result = run_cli(str(samples / "chelsea.webp"), str(samples / "coffee.png"), "-o",
                     str(tmp_path / "out"), "--mode", "fast", "--threads", "1",
                     "--report", str(report), "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    options = json.loads(report.read_text())["options"]
    assert options["threads"] == 1
    # As many as the cores allow (one thread each), but never more than the images.
    assert options["workers"] == min(2, parallel.usable_cores())
