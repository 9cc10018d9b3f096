"""`bgremove remove in/ -o out/ --watch`: a hot folder, run as a user runs it (a subprocess,
files copied in while it runs, then Ctrl-C or SIGTERM)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import cli_env, run_cli


class Watching:
    """A `bgremove ... --watch --json` in the background, its stdout and stderr in files."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.out = tmp / "stdout.jsonl"
        self.err = tmp / "stderr.txt"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bgremove", *args, "--watch", "--json"],
            stdout=self.out.open("wb"), stderr=self.err.open("wb"), stdin=subprocess.DEVNULL,
            env=env or cli_env())

    def lines(self) -> list[dict]:
        text = self.out.read_text()
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def wait_for(self, what, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"it ended: {self.err.read_text()}")
            if what():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out; stderr: {self.err.read_text()}")

    def watching(self) -> None:
        self.wait_for(lambda: "watching" in self.err.read_text())

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=120)


def slow_copy(source: Path, dest: Path, parts: int = 4, pause: float = 0.25) -> None:
    """Write a file in several pieces with pauses between them, as a slow network copy does."""
    data = source.read_bytes()
    step = len(data) // parts + 1
    with dest.open("wb") as f:
        for start in range(0, len(data), step):
            f.write(data[start:start + step])
            f.flush()
            time.sleep(pause)


@pytest.fixture
def folder(tmp_path, samples) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(samples / "coffee.png", src / "first.png")
    return src


def small(samples: Path, dest: Path, shift: int) -> None:
    photo = Image.open(samples / "astronaut.jpg").convert("RGB")
    photo.crop((shift, shift, shift + 200, shift + 200)).resize((96, 96)).save(dest, quality=90)


def test_slow_copies_and_bursts_are_each_made_once_and_whole(folder, samples, tmp_path):
    # The output folder inside the input folder: its own writes must not trigger it.
    out = folder / "out"
    run = Watching(tmp_path, str(folder), "-o", str(out), "--mode", "fast", "--format", "png")
    try:
        run.watching()
        assert [line["input"] for line in run.lines()] == [str(folder / "first.png")]
        slow_copy(samples / "rocket.jpg", folder / "sub" / "slow.jpg")
        for i in range(5):  # a burst
            small(samples, folder / f"burst{i}.jpg", 20 * i)
        (folder / ".hidden.jpg").write_bytes((samples / "rocket.jpg").read_bytes())
        (folder / "download.jpg.part").write_bytes(b"half a photo")
        run.wait_for(lambda: len(run.lines()) >= 7)
        time.sleep(1.5)  # nothing more comes: no second output, nothing from out/ or ignored
        code = run.stop()
    finally:
        if run.process.poll() is None:
            run.process.kill()
    lines = run.lines()
    inputs = [line["input"] for line in lines]
    assert len(inputs) == len(set(inputs)) == 7, inputs
    assert {Path(i).name for i in inputs} == {"first.png", "slow.jpg",
                                             *(f"burst{i}.jpg" for i in range(5))}
    assert all(line["status"] == "done" for line in lines)
    assert code == 0, run.err.read_text()
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == sorted(["first.png", "sub/slow.png", *(f"burst{i}.png" for i in range(5))])
    slow = Image.open(out / "sub" / "slow.png")
    slow.load()  # whole: it decodes
    assert slow.size == Image.open(samples / "rocket.jpg").size
    assert "processed" in run.err.read_text()  # the usual summary


def test_a_bad_file_is_reported_and_the_watch_goes_on(folder, samples, tmp_path):
    out = tmp_path / "out"
    run = Watching(tmp_path, str(folder), "-o", str(out), "--mode", "fast")
    try:
        run.watching()
        (folder / "broken.jpg").write_bytes(b"not a photo at all")
        run.wait_for(lambda: len(run.lines()) >= 2)
        small(samples, folder / "after.jpg", 0)
        run.wait_for(lambda: len(run.lines()) >= 3)
        code = run.stop(signal.SIGTERM)
    finally:
        if run.process.poll() is None:
            run.process.kill()
    status = {Path(line["input"]).name: line["status"] for line in run.lines()}
    assert status == {"first.png": "done", "broken.jpg": "failed", "after.jpg": "done"}
    assert code == 1  # a file failed
    assert (out / "after.webp").exists() and not (out / "broken.webp").exists()


def test_remote_backend(folder, samples, tmp_path):
    import bgremove
    from bgremove.server import create_app
    from bgremove.server.store import open_store
    from tests.serving import serve_app

    store = open_store(tmp_path / "keys.sqlite3")
    key = store.create("tester@example.com", 10)
    with bgremove.new_session() as model, serve_app(create_app(store, session=model)) as base:
        env = cli_env(BGREMOVE_API_KEY=key)
        run = Watching(tmp_path, str(folder), "-o", str(tmp_path / "out"), "--backend",
                       "remote", "--api-url", f"{base}/api/remove-background/", "--mode",
                       "fast", env=env)
        try:
            run.watching()
            small(samples, folder / "new.jpg", 10)
            run.wait_for(lambda: len(run.lines()) >= 2)
            code = run.stop()
        finally:
            if run.process.poll() is None:
                run.process.kill()
    lines = run.lines()
    assert [line["status"] for line in lines] == ["done", "done"]
    assert lines[-1]["credits_remaining"] == 8  # the API's balance, as in a batch
    assert code == 0
    assert "credits spent" in run.err.read_text()


@pytest.mark.parametrize("extra, words", [
    (["--dry-run"], "--dry-run"),
    (["--prune"], "--prune"),
])
def test_usage_errors(folder, tmp_path, extra, words):
    result = run_cli(str(folder), "-o", str(tmp_path / "out"), "--watch", *extra)
    assert result.returncode == 2 and words in result.stderr.decode()
    single = run_cli(str(folder / "first.png"), "-o", str(tmp_path / "o.png"), "--watch")
    assert single.returncode == 2 and b"input folder" in single.stderr


@pytest.mark.parametrize("args, says", [
    (["--dry-run"], "cannot be combined with --dry-run"),
    (["--check"], "cannot be combined with --check"),
    (["--shard", "1/2"], "cannot be combined with --shard"),
    (["--cluster", "local"], "cannot be combined with --cluster"),
])
def test_what_the_watch_cannot_do_is_a_usage_error_before_any_work(tmp_path, args, says):
    from tests.inprocess import invoke

    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "in" / "a.png")
    proc = invoke(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--watch", *args)
    assert proc.returncode == 2 and says in proc.stderr.decode()
    assert not (tmp_path / "out").exists()


def test_the_watch_follows_folders_not_files(tmp_path):
    from tests.inprocess import invoke

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    proc = invoke(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--watch")
    assert proc.returncode == 2 and b"name at least one input folder" in proc.stderr
