"""Re-running is cheap and safe, and an interrupted run (Ctrl-C, SIGTERM) leaves only whole files
and is finished by the next run, every output written exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import cli_env, run_cli
from tests.inprocess import invoke
from tests.test_pipes import small_copy
from tests.test_stop import WAIT, Gate


def make_batch(samples: Path, root: Path, count: int) -> Path:
    src = root / "in"
    photos = sorted(p for p in samples.iterdir() if p.suffix != ".md")
    for i in range(count):
        photo = photos[i % len(photos)]
        small_copy(photo, src / f"{i:02}-{photo.stem}{photo.suffix}")
    return src


def statuses(stdout: bytes) -> dict[str, list[str]]:
    """Output path -> statuses it got, from --json lines."""
    seen: dict[str, list[str]] = {}
    for line in stdout.decode().splitlines():
        outcome = json.loads(line)
        seen.setdefault(outcome["output"], []).append(outcome["status"])
    return seen


def outputs(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in out.glob("*.webp")} if out.exists() else {}


def assert_only_whole_files(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    for path in out.glob("*.webp"):
        with Image.open(path) as image:
            image.load()  # a truncated file would fail here
        assert image.mode == "RGBA"


def start_and_interrupt(src: Path, out: Path, signals: list[signal.Signals]
                        ) -> subprocess.CompletedProcess[bytes]:
    """Start a batch, wait until some outputs exist, send `signals` (50 ms apart), wait for exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bgremove", str(src), "-o", str(out), "--mode", "fast",
         "--workers", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    deadline = time.monotonic() + 240
    while len(outputs(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_second_run_processes_nothing_and_overwrite_redoes(samples, tmp_path):
    src = make_batch(samples, tmp_path, 2)
    out = tmp_path / "out"
    first = run_cli(str(src), "-o", str(out), "--mode", "fast", "--json")
    assert first.returncode == 0, first.stderr.decode()
    assert sorted(statuses(first.stdout).values()) == [["done"], ["done"]]
    stamps = outputs(out)

    again = run_cli(str(src), "-o", str(out), "--mode", "fast", "--json")
    assert again.returncode == 0
    assert sorted(statuses(again.stdout).values()) == [["skipped"], ["skipped"]]
    assert outputs(out) == stamps  # not touched

    redo = run_cli(str(src), "-o", str(out), "--mode", "fast", "--json", "--overwrite")
    assert sorted(statuses(redo.stdout).values()) == [["done"], ["done"]]
    assert all(outputs(out)[path] != stamp for path, stamp in stamps.items())


@pytest.fixture
def gated(monkeypatch) -> Callable[[Gate], None]:
    """The command's local session replaced by a Gate (tests/test_stop.py): images wait until
    the test lets them go, so what is in flight when the signal comes is known, not timed."""

    def use(gate: Gate) -> None:
        monkeypatch.setattr("bgremove.api.open_local",
                            lambda *args, workers=None, **kwargs: (gate, workers or 1))

    return use


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_batch_is_finished_by_the_next_run(samples, tmp_path, sig, gated):
    """The command in this process, a real signal to it, and a session that holds each image
    until the command has seen the signal: two images in flight then, two more queued at most,
    two never started, whatever the machine's speed."""
    count = 6  # stopped with 2 in flight on 2 workers: 2 more queued at most, 2 never started
    src = make_batch(samples, tmp_path, count)
    out = tmp_path / "out"
    gate = Gate()
    gated(gate)

    def interrupt() -> None:
        gate.take(2, gate.started)  # both workers hold an image
        os.kill(os.getpid(), sig)  # to the command's handler, on this process's main thread
        assert gate.cancelled.wait(WAIT)  # the batch has seen it
        gate.open_all()

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    first = invoke(str(src), "-o", str(out), "--mode", "fast", "--workers", "2", "--json")
    interrupter.join()
    stderr = first.stderr.decode()
    assert first.returncode == 130, stderr
    assert "interrupted" in stderr and "processed" in stderr  # the summary was printed
    assert_only_whole_files(out)
    after_first = outputs(out)
    first_runs = statuses(first.stdout)
    done_first = {path for path, s in first_runs.items() if s == ["done"]}
    # Every file got one line; what was reported done is exactly what is on disk.
    assert len(first_runs) == count and all(len(s) == 1 for s in first_runs.values())
    assert done_first == set(after_first)
    assert 2 <= len(done_first) < count, "the batch should have been stopped half-way"
    assert {s[0] for p, s in first_runs.items() if p not in done_first} == {"not processed"}

    gated(Gate(open=True))  # the same session (its stamps name it), holding nothing back
    second = invoke(str(src), "-o", str(out), "--mode", "fast", "--json")
    assert second.returncode == 0, second.stderr.decode()
    second_runs = statuses(second.stdout)
    assert {p for p, s in second_runs.items() if s == ["skipped"]} == done_first
    done_second = {p for p, s in second_runs.items() if s == ["done"]}
    assert done_first.isdisjoint(done_second)
    assert done_first | done_second == set(outputs(out)) and len(outputs(out)) == count
    assert all(outputs(out)[p] == stamp for p, stamp in after_first.items())  # written once
    assert_only_whole_files(out)


def test_second_ctrl_c_abandons_work_in_flight_cleanly(samples, tmp_path):
    src = make_batch(samples, tmp_path, 8)
    out = tmp_path / "out"
    first = start_and_interrupt(src, out, [signal.SIGINT, signal.SIGINT])
    stderr = first.stderr.decode()
    assert first.returncode == 130, stderr
    assert "abandoned" in stderr and "processed" in stderr
    assert_only_whole_files(out)
    runs = statuses(first.stdout)
    assert len(runs) == 8
    # What was abandoned was not written; what is on disk was reported done.
    assert {p for p, s in runs.items() if s == ["done"]} == set(outputs(out))
    abandoned = [p for p, s in runs.items() if s == ["not processed"]]
    assert abandoned and not any(Path(p).exists() for p in abandoned)
