"""The API client against scripted answers (httpx.MockTransport): limits, retries, stops, secrecy.

The end-to-end behaviour against the real `bgremove serve` is in test_remote_cli.py; here each
policy is pinned down with answers a real server gives only rarely (429, 500, dropped connections).
"""

from __future__ import annotations

import io
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from bgremove.backends.remote import RemoteSession
from bgremove.batch import Batch
from bgremove.cli.exits import exit_code, exit_code_of
from bgremove.cli.progress import ConsoleReporter
from bgremove.errors import (
    AuthenticationFailed,
    FileFailed,
    ImageError,
    OutOfCredits,
    SetupError,
    StopBatch,
    UsageError,
)
from bgremove.options import OutputFormat, RemovalOptions
from bgremove.outcomes import Status

KEY = "sk-test-7c1d9e0b4a5f42d1"
URL = "http://api.test/api/remove-background/"


def image_bytes(width: int = 32, height: int = 24, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (200, 40, 40)).save(buffer, fmt)
    return buffer.getvalue()


def cutout_png(width: int = 32, height: int = 24) -> bytes:
    """An RGBA cut-out: left half opaque red, right half transparent."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[:, :, 0] = 200
    rgba[:, : width // 2, 3] = 255
    rgba[:, width // 2 :, 3] = 0
    rgba[0, 0, 3] = 128
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def form(request: httpx.Request) -> dict[str, bytes]:
    """The multipart fields of a request, by name."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields = {}
    for part in request.read().split(b"--" + boundary):
        head, sep, body = part.partition(b"\r\n\r\n")
        if sep:
            name = re.search(rb'name="([^"]+)"', head).group(1).decode()
            fields[name] = body[:-2]
    return fields


def ok(request: httpx.Request, credits: int = 41, request_id: str = "req-1") -> httpx.Response:
    fields = form(request)
    data = cutout_png()
    if fields.get("outputFormat") == b"webp":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buffer, "WEBP")
        data = buffer.getvalue()
    return httpx.Response(200, content=data, headers={
        "content-type": "image/" + fields.get("outputFormat", b"webp").decode(),
        "x-user-credits": str(credits), "x-request-id": request_id})


def error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message},
                          headers={"x-request-id": f"req-{status}", **headers})


class Script:
    """A transport that answers each request with the next step; the last step repeats."""

    def __init__(self, *steps: Callable[[httpx.Request], httpx.Response] | int | Exception):
        self.steps = list(steps)
        self.requests: list[tuple[float, httpx.Request]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((time.monotonic(), request))
            step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return error(step, f"scripted {step}")
        return step(request)

    @property
    def count(self) -> int:
        return len(self.requests)


@pytest.fixture
def make_backend() -> Iterator[Callable[..., RemoteSession]]:
    made = []

    def make(script: Script, **kw) -> RemoteSession:
        kw.setdefault("backoff", 0.001)
        client = httpx.Client(transport=httpx.MockTransport(script))
        backend = RemoteSession(URL, KEY, client=client, **kw)
        made.append(client)
        return backend

    yield make
    for client in made:
        client.close()


def test_sends_key_and_options_and_reads_the_credit_headers(make_backend):
    script = Script(ok)
    backend = make_backend(script)
    options = RemovalOptions(output_format=OutputFormat.png, smooth_edges=False)
    result = backend.process(image_bytes(fmt="JPEG"), options)

    _, request = script.requests[0]
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["x-api-key"] == KEY
    fields = form(request)
    assert fields["outputFormat"] == b"png" and fields["smoothEdges"] == b"false"
    assert fields["mode"] == b"balanced" and fields["includeMask"] == b"true"
    assert fields["file"][:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(result.data)).format == "PNG"
    assert (result.credits_spent, result.credits_remaining, result.request_id) == (1, 41, "req-1")


@pytest.mark.parametrize("data, limit", [
    (image_bytes(4001, 20), "4000x4000"),
    (image_bytes(20, 4001, fmt="JPEG"), "4000x4000"),
    (b"hello, not an image", "not an image"),
    (b"\xff\xd8\xff\xe0" + bytes(10 * 1024 * 1024), "10 MB"),
])
def test_a_file_beyond_the_api_limits_is_refused_before_sending(make_backend, data, limit):
    script = Script(ok)
    with pytest.raises(ImageError, match=re.escape(limit)):
        make_backend(script).process(data, RemovalOptions())
    assert script.count == 0


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP"])
def test_formats_the_api_does_not_take_are_sent_as_png(make_backend, fmt):
    script = Script(ok)
    make_backend(script).process(image_bytes(fmt=fmt), RemovalOptions())
    sent = Image.open(io.BytesIO(form(script.requests[0][1])["file"]))
    assert sent.format == "PNG" and sent.size == (32, 24)
    assert sent.getpixel((3, 3)) == (200, 40, 40)  # lossless


def test_max_size_shrinks_before_sending(make_backend):
    script = Script(ok)
    make_backend(script).process(image_bytes(6000, 3000, fmt="JPEG"),
                                 RemovalOptions(max_size=1000))
    sent = Image.open(io.BytesIO(form(script.requests[0][1])["file"]))
    assert sent.format == "JPEG" and sent.size == (1000, 500)


def test_largest_allowed_image_is_sent(make_backend):
    script = Script(ok)
    make_backend(script).process(image_bytes(4000, 8), RemovalOptions())
    assert script.count == 1


def test_400_is_not_retried(make_backend):
    script = Script(lambda r: error(400, "invalid mode"), ok)
    with pytest.raises(FileFailed, match="invalid mode") as caught:
        make_backend(script).process(image_bytes(), RemovalOptions())
    assert caught.value.request_id == "req-400"
    assert script.count == 1


def test_a_redirect_is_not_followed_with_the_key(make_backend):
    script = Script(lambda r: httpx.Response(308, headers={"location": "http://elsewhere.test/"}))
    with pytest.raises(SetupError, match="redirects .* to http://elsewhere.test/"):
        make_backend(script).process(image_bytes(), RemovalOptions())
    assert script.count == 1


def test_transient_failures_are_retried_until_one_succeeds(make_backend):
    script = Script(
        500,
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        503,
        ok,
    )
    result = make_backend(script, max_retries=5).process(image_bytes(), RemovalOptions())
    assert result.credits_remaining == 41
    assert script.count == 6


class WatchedEvent(threading.Event):
    """The session's stop event (what its backoffs and its pacer wait on), recording every
    wait's timeout and saying when a thread is waiting: a test then knows what was waited for,
    and when, without measuring time."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.waiting.set()
        return super().wait(timeout)


def test_retries_are_bounded_and_back_off(make_backend):
    script = Script(500)
    backend = make_backend(script, max_retries=3, backoff=0.05)
    backend._halt = waits = WatchedEvent()
    gave_up = "gave up after 4 attempts: scripted 500 (HTTP 500)"
    with pytest.raises(FileFailed, match=re.escape(gave_up)):
        backend.process(image_bytes(), RemovalOptions())
    times = [t for t, _ in script.requests]
    assert len(times) == 4
    # exponential with jitter: each wait lies in [d/2, d] for d = 0.05, 0.1, 0.2 ...
    assert len(waits.timeouts) == 3
    for waited, ceiling in zip(waits.timeouts, [0.05, 0.1, 0.2], strict=True):
        assert waited is not None and ceiling / 2 <= waited <= ceiling
    # ... and is waited out before the next attempt (a wait never ends early; however late
    # a busy machine lets it end does not matter)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, waited in zip(gaps, waits.timeouts, strict=True):
        assert gap >= waited - 0.005


def test_429_waits_retry_after_for_the_whole_pool(make_backend):
    script = Script(lambda r: error(429, "slow down", **{"retry-after": "1"}), ok)
    backend = make_backend(script)
    results = []

    def send() -> None:
        results.append(backend.process(image_bytes(), RemovalOptions()))

    deferred = threading.Event()
    defer = backend.pacer.defer

    def defer_and_say(seconds: float) -> None:
        defer(seconds)
        deferred.set()

    backend.pacer.defer = defer_and_say
    first = threading.Thread(target=send)
    first.start()
    assert deferred.wait(30)  # the 429 has arrived; a second worker now asks for a slot
    second = threading.Thread(target=send)
    second.start()
    first.join()
    second.join()
    times = sorted(t for t, _ in script.requests)
    assert len(results) == 2 and len(times) == 3
    assert times[1] - times[0] >= 0.95, "no request may go out before Retry-After has passed"


def test_429s_never_use_up_the_retries(make_backend):
    # A shared key's other users can take the slots several times running: a slot still frees
    # up, so the file waits for it rather than failing.
    busy = lambda r: error(429, "slow down", **{"retry-after": "0"})  # noqa: E731
    script = Script(*[busy] * 6, ok)
    result = make_backend(script, max_retries=2).process(image_bytes(), RemovalOptions())
    assert result.credits_remaining == 41 and script.count == 7


def test_401_stops_and_nothing_more_is_sent(make_backend):
    script = Script(lambda r: error(401, "Invalid API key"), ok)
    backend = make_backend(script)
    with pytest.raises(AuthenticationFailed, match="API key") as caught:
        backend.process(image_bytes(), RemovalOptions())
    assert exit_code(caught.value) == 3  # the command exits with it (bgremove/cli/exits.py)
    with pytest.raises(AuthenticationFailed):
        backend.process(image_bytes(), RemovalOptions())
    assert script.count == 1


def test_403_stops_sending_new_work(make_backend):
    script = Script(lambda r: error(403, "Insufficient credits"), ok)
    backend = make_backend(script)
    with pytest.raises(OutOfCredits, match="credits") as caught:
        backend.process(image_bytes(), RemovalOptions())
    assert exit_code(caught.value) == 4
    with pytest.raises(OutOfCredits):
        backend.process(image_bytes(), RemovalOptions())
    assert script.count == 1


def test_cancel_abandons_requests_waiting_for_a_slot(make_backend):
    script = Script(ok)
    backend = make_backend(script, rate_limit=1, rate_window=30.0)
    backend.process(image_bytes(), RemovalOptions())
    errors = []

    def wait_for_slot() -> None:
        try:
            backend.process(image_bytes(), RemovalOptions())
        except StopBatch as exc:
            errors.append(exc)

    backend._halt = halt = WatchedEvent()
    waiting = threading.Thread(target=wait_for_slot)
    waiting.start()
    assert halt.waiting.wait(30)  # the thread waits for the next slot, 30 s away
    backend.cancel()
    waiting.join(20)
    assert not waiting.is_alive()  # gone well before the slot's 30 s
    assert [str(e) for e in errors] == ["interrupted"]
    assert script.count == 1


def test_a_colour_background_is_composited_here(make_backend):
    script = Script(ok)
    options = RemovalOptions(include_mask=False, background_color=(0, 128, 255))
    result = make_backend(script).process(image_bytes(), options)
    fields = form(script.requests[0][1])
    # the API knows only white: ask it for the matte, losslessly, and fill the colour in here
    assert fields["includeMask"] == b"true" and fields["outputFormat"] == b"png"
    image = Image.open(io.BytesIO(result.data))
    assert image.format == "WEBP" and image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    assert np.abs(pixels[12, 4] - [200, 0, 0]).max() <= 6  # subject
    assert np.abs(pixels[12, 28] - [0, 128, 255]).max() <= 6  # background, now blue


def test_white_background_is_left_to_the_api(make_backend):
    script = Script(ok)
    make_backend(script).process(image_bytes(), RemovalOptions(include_mask=False))
    fields = form(script.requests[0][1])
    assert fields["includeMask"] == b"false" and fields["outputFormat"] == b"webp"


def test_key_is_masked_wherever_it_could_surface(make_backend):
    echo = f"key {KEY} is not valid"
    backend = make_backend(Script(lambda r: error(400, echo)))
    assert KEY not in repr(backend) and KEY not in repr(backend.__dict__)
    for script, exc_type in [
        (Script(lambda r: error(400, echo)), FileFailed),
        (Script(lambda r: error(401, echo)), AuthenticationFailed),
        (Script(httpx.ConnectError(f"cannot reach {KEY}")), SetupError),
    ]:
        with pytest.raises(exc_type) as caught:
            make_backend(script, max_retries=1).process(image_bytes(), RemovalOptions())
        shown = "".join(traceback.format_exception(caught.value))
        assert KEY not in shown and "***" in shown


# The engine and the backend together: what a batch does when the API stops it.

def batch(tmp_path, count: int) -> tuple[str, str]:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(count):
        (folder / f"img{i:02d}.png").write_bytes(image_bytes())
    return str(folder), str(tmp_path / "out")


def run_batch(session: RemoteSession, work, workers: int, max_credits: int | None = None):
    stream = io.StringIO()
    reporter = ConsoleReporter(Console(file=stream, width=200), credits=True)
    summary = Batch([work[0]], work[1], max_credits=max_credits).run(
        session, workers=workers, on_progress=reporter.update)
    reporter.finish(summary)
    return summary, stream.getvalue()


class Account:
    """A scripted API with a balance: charges 1 per answer, 403 when empty, like the contract."""

    def __init__(self, credits: int, latency: float = 0.05):
        self.credits, self.latency = credits, latency
        self.lock = threading.Lock()
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.latency)
        with self.lock:
            self.requests += 1
            if self.credits <= 0:
                return error(403, "Insufficient credits")
            self.credits -= 1
            left = self.credits
        return ok(request, credits=left, request_id=f"req-{self.requests}")


def test_out_of_credits_stops_the_batch_and_names_what_was_left(make_backend, tmp_path):
    account = Account(credits=3)
    work = batch(tmp_path, 12)
    summary, shown = run_batch(make_backend(account), work, workers=4)
    written = sorted(p.stem for p in (tmp_path / "out").iterdir())
    left = sorted(o.item.source.stem for o in summary.not_processed)
    assert len(written) == 3 and summary.count(Status.done) == 3
    assert sorted(written + left) == [f"img{i:02d}" for i in range(12)]
    assert exit_code_of(summary) == 4 and summary.credits_spent == 3
    assert summary.credits_remaining == 0
    # no new work after the first 403: only what was already in flight met the empty account
    assert account.requests <= 3 + 4
    assert "out of credits" in shown
    for name in left:
        assert name in shown


def test_401_stops_the_batch_at_once(make_backend, tmp_path):
    script = Script(lambda r: (time.sleep(0.05), error(401, "Invalid API key"))[1])
    summary, shown = run_batch(make_backend(script), batch(tmp_path, 20), workers=4)
    assert exit_code_of(summary) == 3
    assert summary.count(Status.not_processed) == 20
    assert script.count <= 4
    assert "API key" in shown


def test_max_credits_spends_exactly_that_many(make_backend, tmp_path):
    account = Account(credits=100)
    summary, shown = run_batch(make_backend(account), batch(tmp_path, 10), workers=8,
                               max_credits=4)
    assert account.requests == 4 and summary.credits_spent == 4
    assert len(list((tmp_path / "out").iterdir())) == 4
    assert summary.count(Status.not_processed) == 6
    assert exit_code_of(summary) == 4
    assert "credits spent" in shown and "96" in shown


def test_pool_keeps_to_the_rate_limit(make_backend):
    script = Script(ok)
    backend = make_backend(script, rate_limit=4, rate_window=0.25)
    threads = [threading.Thread(target=lambda: [backend.process(image_bytes(), RemovalOptions())
                                                for _ in range(3)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = sorted(t for t, _ in script.requests)
    assert len(times) == 12
    assert min(b - a for a, b in zip(times, times[4:], strict=False)) >= 0.25


def test_a_key_that_http_cannot_carry_is_refused_without_showing_it():
    with pytest.raises(UsageError, match="not ASCII") as caught:
        RemoteSession("http://127.0.0.1:9/api/remove-background/", "sk-secret-valé")
    assert "secret" not in str(caught.value) and "é" not in str(caught.value)
