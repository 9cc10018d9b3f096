"""Batches on a Dask cluster (`--cluster`): the same outputs, reports and exit codes as the local
engine; a killed worker costs a re-run of its chunks and every output is still written once, whole;
Ctrl-C stops the job and the next run finishes it. The real CLI in a subprocess, real Dask worker
processes, the real model."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import cli_env, run_cli
from tests.inprocess import invoke
from tests.test_new_user import GUARD, declared_distributions
from tests.test_pipes import json_lines
from tests.test_resume import assert_only_whole_files, make_batch

pytest.importorskip("distributed")

# Three chunks of 4 (client.MIN_SPLIT) over two workers, with one still to send: a kill after 4
# outputs or a Ctrl-C after 6 lands mid-run, with work in flight and work not yet started. Each
# photo is a model run, so more only cost time.
PHOTOS = 12


@pytest.fixture(scope="module")
def photos(samples, tmp_path_factory) -> Path:
    """PHOTOS small photos (the samples, 96 px on their longer side)."""
    root = tmp_path_factory.mktemp("photos")
    src = make_batch(samples, root, PHOTOS)
    for path in src.iterdir():
        from PIL import Image

        with Image.open(path) as image:
            image.thumbnail((96, 96))
            image.save(path)
    return src


@pytest.fixture(scope="module")
def plain(photos, tmp_path_factory) -> Path:
    """The outputs of the local engine, to compare with (made in this process)."""
    out = tmp_path_factory.mktemp("plain") / "out"
    proc = invoke(str(photos), "-o", str(out), "--mode", "fast")
    assert proc.returncode == 0, proc.stderr.decode()
    return out


def webps(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.glob("*.webp")}


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def start(*args: str) -> subprocess.Popen:
    # Its own process group, as a shell gives a command: Ctrl-C reaches all of it.
    return subprocess.Popen([sys.executable, "-m", "bgremove", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env(), start_new_session=True)


class Watch:
    """Each output's (inode, mtime) when it is first seen: a rewrite changes both."""

    def __init__(self, out: Path):
        self.out = out
        self.first: dict[str, tuple[int, int]] = {}

    def look(self) -> int:
        try:
            entries = list(os.scandir(self.out))
        except FileNotFoundError:  # not yet made (the run's write probe makes and removes it)
            entries = []
        for entry in entries:
            if entry.name.endswith(".webp") and entry.name not in self.first:
                st = entry.stat()
                self.first[entry.name] = (st.st_ino, st.st_mtime_ns)
        return len(self.first)

    def until(self, proc: subprocess.Popen, count: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while self.look() < count and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def unchanged(self) -> bool:
        now = {}
        for name in self.first:
            st = (self.out / name).stat()
            now[name] = (st.st_ino, st.st_mtime_ns)
        return now == self.first


def finish(proc: subprocess.Popen, watch: Watch | None = None) -> subprocess.CompletedProcess:
    """Wait for the command, watching the outputs appear while it runs."""
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if watch is not None:
            watch.look()
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def dask_workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes of the command's local cluster (spawned by multiprocessing)."""
    return [child for child in psutil.Process(proc.pid).children(recursive=True)
            if "spawn_main" in " ".join(child.cmdline())]


def test_a_local_cluster_writes_the_same_bytes_though_a_worker_is_killed(photos, plain,
                                                                        tmp_path):
    # One run for both: the bytes, the --json lines and the report are those of the local engine,
    # and a worker killed mid-run costs only a re-run of its chunks, each output written once.
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    proc = start(str(photos), "-o", str(out), "--mode", "fast", "--cluster", "local:2",
                 "--json", "--report", str(report))
    watch = Watch(out)
    watch.until(proc, PHOTOS // 3)
    workers = dask_workers(proc)
    assert len(workers) == 2 and watch.look() < PHOTOS, "the kill must land mid-run"
    workers[0].send_signal(signal.SIGKILL)
    run = finish(proc, watch)
    stderr = run.stderr.decode()
    assert run.returncode == 0, stderr
    assert webps(out) == webps(plain)  # every output there, whole, the same bytes
    assert not temporaries(out)
    assert watch.unchanged(), "an output was written twice"
    lines = json_lines(run.stdout)
    assert sorted(line["output"] for line in lines) == sorted(str(out / n) for n in webps(plain))
    assert [line["status"] for line in lines] == ["done"] * PHOTOS
    document = json.loads(report.read_text())
    assert document["options"]["cluster"] == "local:2"
    assert document["counts"]["done"] == PHOTOS
    assert "processed" in stderr


def test_ctrl_c_stops_the_job_and_the_next_run_finishes_it(photos, plain, tmp_path, scheduler):
    out = tmp_path / "out"
    proc = start(str(photos), "-o", str(out), "--mode", "fast", "--cluster", "local:2", "--json")
    watch = Watch(out)
    watch.until(proc, 6)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the workers too
    first = finish(proc, watch)
    stderr = first.stderr.decode()
    assert first.returncode == 130, stderr
    assert "interrupted" in stderr and "processed" in stderr
    assert_only_whole_files(out)
    lines = json_lines(first.stdout)
    assert len(lines) == PHOTOS and len({line["input"] for line in lines}) == PHOTOS
    done = {line["output"] for line in lines if line["status"] == "done"}
    assert done == {str(p) for p in out.glob("*.webp")}
    assert 6 <= len(done) < PHOTOS, "the job should have stopped half-way"
    assert {line["status"] for line in lines if line["output"] not in done} == {"not processed"}
    stamps = {name: mark for name, mark in watch.first.items()}

    # The next run, on the running cluster (a second local one would only cost its start-up).
    second = run_cli(str(photos), "-o", str(out), "--mode", "fast", "--cluster",
                     scheduler.address, "--json")
    assert second.returncode == 0, second.stderr.decode()
    again = json_lines(second.stdout)
    assert {line["output"] for line in again if line["status"] == "skipped"} == done
    assert {line["status"] for line in again if line["output"] not in done} == {"done"}
    assert webps(out) == webps(plain) and not temporaries(out)
    watch.first = stamps
    assert watch.unchanged()


def test_sigterm_to_the_whole_group_stops_the_job_as_ctrl_c_does(photos, tmp_path):
    # As a service manager stops a unit: every process of the group gets SIGTERM. The workers
    # finish their chunks, so what the run reports is what is on disk.
    out = tmp_path / "out"
    proc = start(str(photos), "-o", str(out), "--mode", "fast", "--cluster", "local:2", "--json")
    watch = Watch(out)
    watch.until(proc, 6)
    os.killpg(proc.pid, signal.SIGTERM)
    run = finish(proc, watch)
    assert run.returncode == 130, run.stderr.decode()
    done = {line["output"] for line in json_lines(run.stdout) if line["status"] == "done"}
    assert done == {str(p) for p in out.glob("*.webp")} and len(done) >= 6
    assert_only_whole_files(out)


def test_ctrl_c_while_the_local_cluster_starts_ends_the_run_cleanly(photos, tmp_path):
    out = tmp_path / "out"
    proc = start(str(photos), "-o", str(out), "--mode", "fast", "--cluster", "local:2")
    deadline = time.monotonic() + 60
    while not dask_workers(proc) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # the workers are still starting up
    run = finish(proc)
    assert run.returncode == 130, run.stderr.decode()
    assert "bgremove summary" in run.stderr.decode()
    assert_only_whole_files(out)


def test_a_second_ctrl_c_leaves_at_once_and_says_what_was_written(photos, plain, tmp_path,
                                                                  scheduler):
    out = tmp_path / "out"
    proc = start(str(photos), "-o", str(out), "--mode", "fast", "--cluster", "local:2", "--json")
    watch = Watch(out)
    watch.until(proc, 6)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    first = finish(proc)
    assert first.returncode == 130, first.stderr.decode()
    assert "abandoned" in first.stderr.decode()
    lines = json_lines(first.stdout)
    assert len(lines) == PHOTOS
    done = {line["output"] for line in lines if line["status"] == "done"}
    assert done == {str(p) for p in out.glob("*.webp")}  # the local workers are gone: final
    # A worker stopped mid-write may leave a temporary file: the next run removes it.
    missing = next(line["output"] for line in lines if line["output"] not in done)
    leftover = Path(missing).with_name(f".{Path(missing).name}.0badc0de.part")
    leftover.write_bytes(b"half an image")
    unrelated = out / ".notes.txt.0badc0de.part"  # not an output of this batch: kept
    unrelated.write_bytes(b"")
    second = run_cli(str(photos), "-o", str(out), "--mode", "fast", "--cluster",
                     scheduler.address)
    assert second.returncode == 0, second.stderr.decode()
    assert webps(out) == webps(plain)
    assert temporaries(out) == [unrelated]


def test_a_chunk_that_kills_its_workers_is_tried_file_by_file():
    from concurrent.futures import Future

    from distributed.scheduler import KilledWorker

    from bgremove.cluster import DaskExecutor
    from bgremove.plan import WorkItem

    class Task:
        def result(self):
            raise KilledWorker("bgremove-chunk", "tcp://127.0.0.1:1", 3)

    executor = DaskExecutor.__new__(DaskExecutor)  # the bookkeeping alone, no cluster
    executor._lock = threading.Lock()
    resubmitted = []
    executor._submit = resubmitted.append
    chunk = [(WorkItem(Path(f"{i}.jpg"), Path(f"{i}.webp")), Future()) for i in range(3)]
    task = Task()
    executor._chunks = {task: chunk}
    executor._answered(task)
    assert resubmitted == [[one] for one in chunk]  # each file alone
    executor._chunks = {task: chunk[:1]}
    executor._answered(task)
    outcome = chunk[0][1].result(timeout=1)
    assert outcome.status.value == "failed" and "died" in outcome.error


class Scheduler:
    """A scheduler and its workers, started as docs/dask-cluster.md says
    (`--preload bgremove.cluster`)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
        self.processes: list[subprocess.Popen] = []
        self.start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(self.file))
        self.address = self._address(time.monotonic() + 60)

    def _address(self, deadline: float) -> str:
        """The scheduler's address, once its file is there and whole (the scheduler writes it
        in place: a reader can see it half-written)."""
        while True:
            try:
                return json.loads(self.file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start(self, *args: str) -> None:
        self.processes.append(subprocess.Popen([self.dask, *args], env=cli_env(),
                                               cwd=self.folder, stderr=subprocess.DEVNULL))

    def add_worker(self, *args: str) -> None:
        from distributed import Client

        self.start("worker", "--scheduler-file", str(self.file), "--nworkers", "1",
                   "--no-dashboard", "--preload", "bgremove.cluster", *args)
        with Client(self.address, set_as_default=False, timeout=60) as client:
            client.wait_for_workers(len(self.processes) - 1, timeout=120)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=60)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    scheduler = Scheduler(tmp_path_factory.mktemp("dask"))
    try:
        scheduler.add_worker("--nthreads", "2")
        yield scheduler
    finally:
        scheduler.close()


def test_a_running_cluster_by_address_and_by_scheduler_file(photos, plain, tmp_path, scheduler):
    names = sorted(p.name for p in photos.iterdir())[:3]
    stems = {name.rsplit(".", 1)[0] for name in names}
    expected = {n: b for n, b in webps(plain).items() if n.rsplit(".", 1)[0] in stems}
    for spec in (scheduler.address, str(scheduler.file)):
        out = tmp_path / spec.rsplit("/", 1)[-1].replace(":", "-")
        proc = run_cli(*(str(photos / n) for n in names), "-o", str(out), "--mode", "fast",
                       "--cluster", spec)
        assert proc.returncode == 0, proc.stderr.decode()
        assert webps(out) == expected

    # A file that fails on a worker fails as it does here: named, with its reason, exit 1.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    runs = [run_cli(str(broken), str(photos / names[0]), "-o", str(tmp_path / out), "--json",
                    "--mode", "fast", *extra) for out, extra in
            (("here", []), ("there", ["--cluster", scheduler.address]))]
    here, there = ([(line["input"], line["status"], line["error"]) for line in json_lines(r.stdout)]
                   for r in runs)
    assert [r.returncode for r in runs] == [1, 1]
    assert sorted(here) == sorted(there) and ("failed" in {status for _, status, _ in there})
    assert str(broken) in runs[1].stderr.decode()

    # A GPU asked for, and no worker that says it has one: the job cannot run (exit 5).
    gpu = (*(str(photos / n) for n in names), "--mode", "fast", "--cluster", scheduler.address,
           "--device", "cuda")
    proc = run_cli(*gpu, "-o", str(tmp_path / "no-gpu"))
    assert proc.returncode == 5, proc.stderr.decode()
    assert "--resources GPU=1" in proc.stderr.decode()
    assert not (tmp_path / "no-gpu").exists() or not any((tmp_path / "no-gpu").iterdir())
    # A worker that advertises one gets the tasks; with no CUDA here its model runs on the CPU,
    # and the command says so.
    scheduler.add_worker("--nthreads", "1", "--resources", "GPU=1")
    proc = run_cli(*gpu, "-o", str(tmp_path / "gpu"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "warning: on the Dask workers: --device cuda" in proc.stderr.decode()
    assert webps(tmp_path / "gpu") == expected


@pytest.mark.parametrize("args, env, complaint", [
    (["--cluster", "local:2", "--backend", "remote", "--api-key", "k" * 20], {}, "remote"),
    (["--cluster", "local:0"], {}, "local:N"),
    (["--cluster", "nowhere"], {}, "tcp://HOST:8786"),
    ([], {"BGREMOVE_CLUSTER": "local:x"}, "BGREMOVE_CLUSTER"),
])
def test_cluster_usage_errors(photos, tmp_path, args, env, complaint):
    proc = run_cli(str(photos), "-o", str(tmp_path / "out"), *args, env=cli_env(**env))
    assert proc.returncode == 2, proc.stderr.decode()
    assert complaint in proc.stderr.decode()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, complaint", [
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    ("nowhere/scheduler.json", "no such scheduler file"),
])
def test_a_cluster_that_cannot_be_reached_is_a_setup_error(photos, tmp_path, spec, complaint):
    proc = run_cli(str(photos), "-o", str(tmp_path / "out"), "--cluster", spec,
                   env=cli_env(DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s"))
    assert proc.returncode == 5, proc.stderr.decode()
    assert complaint in proc.stderr.decode()


def test_stdin_and_stdout_cannot_go_to_a_cluster(samples):
    proc = run_cli("-", "-o", "-", "--cluster", "local:1",
                   input=(samples / "rocket.jpg").read_bytes())
    assert proc.returncode == 2 and "stdin or stdout" in proc.stderr.decode()
    assert proc.stdout == b""


def test_without_the_extra_cluster_says_what_to_install(photos, tmp_path):
    declared = ",".join(sorted(declared_distributions()))
    proc = subprocess.run([sys.executable, "-c", GUARD, declared, str(photos), "-o",
                           str(tmp_path / "out"), "--cluster", "local:2"],
                          capture_output=True, env=cli_env(), timeout=300)
    assert proc.returncode == 2, proc.stderr.decode()
    assert "pip install 'bgremove[cluster]'" in proc.stderr.decode()


def test_cluster_is_a_setting(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('cluster = "tcp://10.0.0.5:8786"\n')
    proc = run_cli("config", "show", "--config", str(config))
    assert proc.returncode == 0
    assert re.search(r'^cluster += "tcp://10.0.0.5:8786" +# config file$', proc.stdout.decode(),
                     re.M)
    proc = run_cli("config", "show", env=cli_env(BGREMOVE_CLUSTER="local:4"))
    assert "# env BGREMOVE_CLUSTER" in proc.stdout.decode()
