"""`bgremove --backend remote` end to end: the CLI against the real API server (`bgremove serve`'s
app) on 127.0.0.1, with a real key store and a known balance. The CLI runs in a subprocess where
the exit status or everything the process prints is the point, else in this process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgremove.backends.local import LocalSession
from bgremove.cli.progress import NAMED
from bgremove.options import Mode, RemovalOptions
from bgremove.server import create_app
from bgremove.server.store import KeyStore, open_store
from tests.api_front import ApiFront, MemoSession
from tests.conftest import cli_env, run_cli
from tests.inprocess import invoke
from tests.serving import serve_app


@pytest.fixture(scope="module")
def model() -> LocalSession:
    # One loaded model for every server in this module.
    return LocalSession()


@dataclass
class Api:
    url: str
    key: str
    store: KeyStore
    key_id: str
    front: ApiFront

    @property
    def credits(self) -> int:
        return self.store.get(self.key_id).credits

    def run(self, *args: str, key: str | None = None, process: bool = False):
        """The CLI against this server: in this process, or in its own (`process=True`)."""
        env = cli_env(BGREMOVE_API_KEY=self.key if key is None else key)
        env.pop("BGREMOVE_API_URL", None)
        args = (*args, "--backend", "remote", "--api-url", self.url)
        return run_cli(*args, env=env) if process else invoke(*args, env=env)


@pytest.fixture
def api(tmp_path, model):
    @contextmanager
    def start(credits: int = 1000, faults: dict[int, str] | None = None,
              **app_options) -> Iterator[Api]:
        store = open_store(tmp_path / "keys.sqlite3")
        key = store.create("tester@example.com", credits)
        key_id = next(k.id for k in store.list())
        app_options.setdefault("session", model)
        front = ApiFront(create_app(store, **app_options), faults or {})
        with serve_app(front) as base:
            yield Api(f"{base}/api/remove-background/", key, store, key_id, front)

    return start


def small_batch(samples: Path, folder: Path, count: int, side: int = 64,
                distinct: int | None = None) -> Path:
    """`count` small photos, cycling through `distinct` different ones (all different by default):
    the server's work stays cheap, the requests are real."""
    folder.mkdir(parents=True)
    source = Image.open(samples / "astronaut.jpg").convert("RGB")
    for i in range(count):
        j = i % (distinct or count)
        crop = source.crop((j * 7 % 200, j * 5 % 200, j * 7 % 200 + 300, j * 5 % 200 + 300))
        crop.resize((side, side)).save(folder / f"img{i:02d}.jpg", quality=90)
    return folder


def warmed(model: LocalSession, folder: Path, options: RemovalOptions) -> MemoSession:
    """A memo backend that already knows the answers for the images in `folder`."""
    memo = MemoSession(model)
    for path in folder.iterdir():
        memo.process(path.read_bytes(), options)
    return memo


def outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


@pytest.mark.parametrize("names, options", [
    (["coffee.png", "astronaut.jpg"], ["--mode", "fast"]),
    (["chelsea.webp"], ["--mode", "quality", "--format", "png", "--no-include-mask",
                        "--background-color", "#3366cc"]),
    (["rocket.jpg"], ["--format", "png", "--no-include-mask", "--preserve-shadows"]),
])
def test_remote_output_matches_local(api, samples, tmp_path, names, options):
    src = tmp_path / "in"
    src.mkdir()
    for name in names:
        shutil.copy(samples / name, src / name)
    local = invoke(str(src), "-o", str(tmp_path / "local"), *options)
    assert local.returncode == 0, local.stderr.decode()
    with api(credits=10) as server:
        remote = server.run(str(src), "-o", str(tmp_path / "remote"), *options)
        assert remote.returncode == 0, remote.stderr.decode()
        assert server.credits == 10 - len(names)
    assert outputs(tmp_path / "remote") == outputs(tmp_path / "local")
    for name in outputs(tmp_path / "local"):
        a, b = pixels(tmp_path / "local" / name), pixels(tmp_path / "remote" / name)
        assert a.shape == b.shape, name
        diff = np.abs(a - b)
        assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3, (name, diff.max())
    stderr = remote.stderr.decode()
    assert "credits spent" in stderr and "credits remaining" in stderr


def test_credits_spent_equal_files_written(api, samples, tmp_path):
    src = small_batch(samples, tmp_path / "in", 8)
    (src / "notes.txt").write_text("not an image")
    shutil.copy(samples / "coffee.png", src / "same.png")
    Image.new("RGB", (4001, 16)).save(src / "too-wide.png")  # over the API's limit: not sent
    (src / "broken.jpg").write_bytes((samples / "rocket.jpg").read_bytes()[:3000])
    with api(credits=100) as server:
        proc = server.run(str(src), "-o", str(tmp_path / "out"), "--mode", "fast")
        stderr = proc.stderr.decode()
        assert proc.returncode == 1, stderr  # two files failed, the rest were written
        written = outputs(tmp_path / "out")
        assert len(written) == 9
        assert 100 - server.credits == len(written)
        assert "4000x4000" in stderr and "too-wide.png" in stderr
        assert "broken.jpg" in stderr
        # the file over the limit never reached the server; the broken one did, and cost nothing
        assert len(server.front.arrivals) == 10
        # a second run finds everything up to date and spends nothing
        again = server.run(str(src), "-o", str(tmp_path / "out"), "--mode", "fast")
        assert 100 - server.credits == len(written)
        assert "skipped (up to date)" in again.stderr.decode()


def test_check_on_the_remote_backend_sends_no_request(api, samples, tmp_path):
    src, out = small_batch(samples, tmp_path / "in", 3), tmp_path / "out"
    with api(credits=10) as server:
        unmade = server.run(str(src), "-o", str(out), "--mode", "fast", "--check")
        assert unmade.returncode == 1 and unmade.stdout.decode().count("missing: ") == 3
        assert server.run(str(src), "-o", str(out), "--mode", "fast").returncode == 0
        arrivals, credits = len(server.front.arrivals), server.credits
        assert arrivals == 3 and credits == 7
        fresh = server.run(str(src), "-o", str(out), "--mode", "fast", "--check")
        assert fresh.returncode == 0, fresh.stderr.decode()
        (src / "img01.jpg").write_bytes((src / "img02.jpg").read_bytes())
        stale = server.run(str(src), "-o", str(out), "--mode", "fast", "--check")
        assert stale.returncode == 1
        assert stale.stdout.decode().splitlines() == [
            f"stale: {out / 'img01.webp'} (input changed; from {src / 'img01.jpg'})"]
        assert (len(server.front.arrivals), server.credits) == (arrivals, credits)
    # The API's outputs are the API's model's: made locally, they would be another model's.
    local = invoke(str(src), "-o", str(out), "--mode", "fast", "--check", "--json")
    assert {json.loads(line)["reason"] for line in local.stdout.decode().splitlines()} == {
        "model changed"}


def test_lowered_rate_cap_is_kept_without_a_429(api, model, samples, tmp_path):
    cap, window = 6, 2.0  # 180 a minute, in a window short enough for a test
    count = 2 * cap + 1  # three of our windows: a full one, a full one, one more request
    src = small_batch(samples, tmp_path / "in", count, side=32, distinct=4)
    # The server answers from memory: the test measures the pacing, not this machine's CPU.
    memo = warmed(model, src, RemovalOptions(mode=Mode.fast))
    with api(rate_limit=cap, rate_window=window, session=memo) as server:
        proc = server.run(str(src), "-o", str(tmp_path / "out"), "--mode", "fast",
                          "--rate-limit", str(cap), "--rate-window", str(window))
        assert proc.returncode == 0, proc.stderr.decode()
        statuses = server.front.statuses()
        times = server.front.times()
        assert 1000 - server.credits == count
    assert statuses == [200] * count  # not one 429
    assert len(outputs(tmp_path / "out")) == count
    # never more than `cap` arrivals in any `window` seconds, as the server counts them...
    assert min(b - a for a, b in zip(times, times[cap:], strict=False)) >= window
    # ...and the limiter does not leave the cap unused: the first window is full (8 workers
    # were ready), and the last request starts two of our windows (each 0.5 s wider than the
    # server's) after the first
    assert times[cap - 1] - times[0] < 1.0
    assert times[-1] - times[0] < 2 * (window + 0.5) + 1.0


def test_faults_lose_no_file_and_charge_none_twice(api, model, samples, tmp_path):
    # Four failures at most (the retry bound), spread over the first requests, plus two slow ones.
    faults = {0: "429", 2: "500", 3: "slow", 5: "drop", 8: "500", 9: "slow"}
    src = small_batch(samples, tmp_path / "in", 12, distinct=4)
    with api(credits=50, faults=faults, session=MemoSession(model)) as server:
        proc = server.run(str(src), "-o", str(tmp_path / "out"), "--mode", "fast")
        stderr = proc.stderr.decode()
        assert proc.returncode == 0, stderr
        statuses = server.front.statuses()
        assert len(outputs(tmp_path / "out")) == 12
        assert 50 - server.credits == 12  # every file charged exactly once
        assert statuses.count(200) == 12
        assert {429, 500, -1} <= set(statuses)
        assert "credits spent" in stderr and "12" in stderr


def test_wrong_key_stops_at_once_with_exit_3(api, samples, tmp_path):
    src = small_batch(samples, tmp_path / "in", 30, side=32)
    with api(credits=50) as server:
        proc = server.run(str(src), "-o", str(tmp_path / "out"), key="bgr_000000000000_" + "x" * 43,
                          process=True)
        assert server.credits == 50
        sent = len(server.front.arrivals)
    stderr = proc.stderr.decode()
    assert proc.returncode == 3, stderr
    assert "API key" in stderr and "not processed (30)" in stderr
    assert not (tmp_path / "out").exists() or outputs(tmp_path / "out") == []
    assert sent <= 8  # what was in flight when the first 401 came back, nothing after


def test_out_of_credits_stops_with_exit_4_and_lists_the_rest(api, samples, tmp_path):
    src = small_batch(samples, tmp_path / "in", 20, side=32)
    with api(credits=5) as server:
        proc = server.run(str(src), "-o", str(tmp_path / "out"), "--workers", "4", process=True)
        assert server.credits == 0
        sent = len(server.front.arrivals)
    stderr = proc.stderr.decode()
    assert proc.returncode == 4, stderr
    written = {Path(p).stem for p in outputs(tmp_path / "out")}
    assert len(written) == 5
    left = {f"img{i:02d}" for i in range(20)} - written
    assert f"not processed ({len(left)})" in stderr
    listed = stderr.split(f"not processed ({len(left)}):")[1]
    named = [name for name in left if name in listed]  # the summary names the first NAMED
    assert len(named) == min(len(left), NAMED)
    assert not any(name in listed for name in written)
    assert sent <= 5 + 4  # new work stopped at the first 403; only what was in flight went on


def test_max_credits_stops_after_that_many(api, samples, tmp_path):
    src = small_batch(samples, tmp_path / "in", 10, side=32)
    with api(credits=100) as server:
        proc = server.run(str(src), "-o", str(tmp_path / "out"), "--max-credits", "4",
                          process=True)
        assert server.credits == 96
    assert proc.returncode == 4, proc.stderr.decode()
    assert len(outputs(tmp_path / "out")) == 4
    assert "not processed (6)" in proc.stderr.decode()


def test_key_never_appears_in_any_output(api, model, samples, tmp_path):
    src = small_batch(samples, tmp_path / "in", 5, side=32, distinct=1)
    Image.new("RGB", (16, 4100)).save(src / "too-tall.png")
    # 5 credits for the first run, 3 for the second, then none
    with api(credits=8, session=MemoSession(model)) as server:
        key_file = tmp_path / "key.txt"
        key_file.write_text(server.key + "\n")
        wrong = "bgr_0123456789ab_" + "y" * 43
        runs = []
        for i, (how, key) in enumerate([
            (["--api-key", server.key], ""),  # a flag is visible in `ps`, but never echoed
            (["--api-key-file", str(key_file)], ""),
            ([], None),  # BGREMOVE_API_KEY; runs out of credits half-way
            ([], wrong),  # rejected
        ]):
            report = tmp_path / f"report{i}.json"
            # every machine-readable output there is, too
            proc = server.run(str(src), "-o", str(tmp_path / f"out{i}"), "-v", *how,
                              "--json", "--report", str(report), key=key, process=True)
            runs.append((proc, report))
        assert [proc.returncode for proc, _ in runs] == [1, 4, 4, 3]
    for proc, report in runs:
        shown = proc.stdout + proc.stderr + report.read_bytes()
        for secret in (server.key, wrong):
            assert secret.encode() not in shown
            # nor the secret part alone (bgr_<id>_<secret>; the secret may itself hold a "_")
            assert secret.split("_", 2)[2].encode() not in shown
