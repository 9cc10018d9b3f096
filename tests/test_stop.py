"""Stopping a batch, in-process and without timing: a session whose every image waits until the
test releases it, so the test knows exactly which images are in flight when it stops the batch.

A first stop lets the work in flight finish and be written, and drops the rest (test_resume.py
does the same through signals, end to end); a second stop abandons the work in flight: `run`
returns at once, and nothing more is written, even by the threads still inside the session."""

from __future__ import annotations

import io
import queue
import threading
from pathlib import Path

import pytest
from PIL import Image

from bgremove import Batch, RemovalOptions
from bgremove.backends import Result, SessionBase
from bgremove.cli.exits import INTERRUPTED, exit_code_of
from bgremove.executors import ABANDONED, Threads
from bgremove.outcomes import Outcome, Status, Summary

WAIT = 60  # seconds: only a broken batch ever waits this long


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (200, 10, 10, 255)).save(buffer, "PNG")
    return buffer.getvalue()


class Gate(SessionBase):
    """Each image waits in `process` until the test releases it; `started` names each image as
    it starts (the input's bytes are its name), `returned` as its cut-out is handed back.
    `cancelled` is set when the batch cancels the session (as it sees a stop). Any input's bytes
    will do: the cut-out is always the same small PNG."""

    kind = "local"
    providers: list[str] = []
    device_warning = None
    model_id = "test gate"
    model_name = "test gate"
    threads = 1
    cutout = _png()

    def __init__(self, *, open: bool = False) -> None:
        self.started: queue.Queue[str] = queue.Queue()
        self.returned: queue.Queue[str] = queue.Queue()
        self.cancelled = threading.Event()
        self._open: dict[str, threading.Event] = {}
        self._all_open = open
        self._lock = threading.Lock()

    def _gate(self, name: str) -> threading.Event:
        with self._lock:
            gate = self._open.setdefault(name, threading.Event())
            if self._all_open:
                gate.set()
            return gate

    def open_all(self) -> None:
        """Release every image, those in flight and any that starts later."""
        with self._lock:
            self._all_open = True
            for gate in self._open.values():
                gate.set()

    def cancel(self) -> None:
        self.cancelled.set()

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        name = data.decode(errors="replace")
        self.started.put(name)
        assert self._gate(name).wait(WAIT), f"{name} was never released"
        self.returned.put(name)
        return Result(self.cutout)

    def release(self, name: str) -> None:
        self._gate(name).set()

    def take(self, count: int, what: queue.Queue[str]) -> list[str]:
        return [what.get(timeout=WAIT) for _ in range(count)]


class WatchedThreads(Threads):
    """The batch's own executor, saying when the batch has acted on a stop: its loop tells the
    executor (`stop`), drops the work queued and not started, and then asks the executor to
    start what it holds (`flush`), which it does once per turn."""

    def __init__(self, workers: int):
        super().__init__(workers)
        self.told = False
        self.acted = threading.Event()

    def stop(self) -> None:
        self.told = True
        super().stop()

    def flush(self) -> None:
        if self.told:
            self.acted.set()
        super().flush()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(8):
        (folder / f"p{n}.jpg").write_bytes(f"p{n}.jpg".encode())  # read by the gate only
    return folder


def start(batch: Batch, session: Gate, executor: Threads
          ) -> tuple[threading.Thread, dict[str, Summary], queue.Queue[Outcome]]:
    """Run the batch on a thread; its summary lands in the dict, each outcome in the queue."""
    ran: dict[str, Summary] = {}
    outcomes: queue.Queue[Outcome] = queue.Queue()
    runner = threading.Thread(target=lambda: ran.update(summary=batch.run(
        session, executor=executor, on_progress=lambda outcome, _: outcomes.put(outcome))))
    runner.start()
    return runner, ran, outcomes


def test_a_stop_finishes_the_work_in_flight_and_drops_the_rest(photos, tmp_path):
    out = tmp_path / "out"
    session = Gate()
    batch = Batch([photos], out)
    executor = WatchedThreads(2)
    runner, ran, outcomes = start(batch, session, executor)
    in_flight = session.take(2, session.started)  # both threads hold an image
    batch.stop()
    # Items queued behind them are dropped by the batch's loop, as it sees the stop: once they
    # are, no thread can take another image, whenever the ones in flight end.
    assert executor.acted.wait(WAIT)
    while not outcomes.empty():
        assert outcomes.get().status is Status.not_processed  # dropped, not started
    for name in in_flight:
        session.release(name)
    runner.join(WAIT)
    assert not runner.is_alive()

    summary = ran["summary"]
    assert summary.interrupted and not summary.abandoned
    assert (summary.count(Status.done), summary.count(Status.not_processed)) == (2, 6)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        Path(name).stem + ".webp" for name in in_flight)  # written whole, and only those
    assert session.started.empty()  # no image started after the stop
    assert {o.error for o in summary.not_processed} == {"interrupted"}
    assert exit_code_of(summary) == INTERRUPTED


def test_a_second_stop_abandons_the_work_in_flight_and_writes_nothing_more(photos, tmp_path):
    out = tmp_path / "out"
    session = Gate()
    batch = Batch([photos], out)
    executor = WatchedThreads(2)
    runner, ran, _ = start(batch, session, executor)
    in_flight = session.take(2, session.started)
    batch.stop()
    batch.stop()
    runner.join(WAIT)  # returns with both images still inside the session
    assert not runner.is_alive()
    summary = ran["summary"]
    assert summary.interrupted and summary.abandoned
    assert (summary.count(Status.done), summary.count(Status.not_processed)) == (0, 8)
    abandoned = [o for o in summary.not_processed if o.item.source.name in in_flight]
    assert len(abandoned) == 2 and {o.error for o in abandoned} == {ABANDONED}

    # The threads it left behind finish their images now: not one is written.
    for name in in_flight:
        session.release(name)
    assert sorted(session.take(2, session.returned)) == sorted(in_flight)
    executor.pool.shutdown(wait=True)  # their write attempts are over
    assert not out.exists() or not any(out.iterdir())
    assert session.started.empty()
