"""`bgremove serve` as a client sees it: the real app on a loopback port, spoken to over HTTP."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from bgremove.backends.local import LocalSession
from bgremove.server import create_app
from bgremove.server.sqlite_store import SqliteKeyStore
from bgremove.server.store import KeyStore, StoreUnavailable, open_store
from tests.serving import serve_app
from tests.test_truncated_jpeg import with_jpeg_size

ORIGIN = "https://app.example"
API = "/api/remove-background/"


class Watched:
    """The real local backend, counting how many images it is given at once."""

    name = "local"

    def __init__(self, inner: LocalSession):
        self.inner = inner
        self.lock = threading.Lock()
        self.active = self.peak = 0

    def process(self, data, options):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return self.inner.process(data, options)
        finally:
            with self.lock:
                self.active -= 1

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Watched:
    return Watched(LocalSession(threads=1))  # one model for every server in this module


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> KeyStore:
    return open_store(tmp_path_factory.mktemp("keys") / "keys.sqlite3")


@pytest.fixture(scope="module")
def url(store, backend) -> str:
    app = create_app(store, cors_origins=[ORIGIN], max_concurrency=2, session=backend)
    with serve_app(app) as base:
        yield base


@pytest.fixture(scope="module")
def small_png(samples) -> bytes:
    image = Image.open(samples / "coffee.png")
    image.thumbnail((120, 120))
    return png_bytes(image)


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with a forged IHDR claiming another size (and a valid CRC)."""
    ihdr = png[12:16] + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def post(url: str, key: str | None, data: bytes | None, path: str = API,
         **fields: str) -> httpx.Response:
    """A multipart request, as FormData sends it (without `file` when data is None)."""
    headers = {"x-api-key": key} if key is not None else {}
    parts = [(name, (None, value)) for name, value in (fields or {"note": "-"}).items()]
    if data is not None:
        parts.append(("file", ("image.png", data)))
    return httpx.post(url + path, headers=headers, files=parts, timeout=120)


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


def balance(store: KeyStore, key: str) -> int:
    info = store.authenticate(key)
    assert info is not None
    return info.credits


def test_success_returns_the_cutout_with_every_header(url, store, samples):
    key = store.create("ada@example.com", 5)
    response = post(url, key, (samples / "coffee.png").read_bytes(),
                    mode="fast", outputFormat="png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-user-email"] == "ada@example.com"
    assert response.headers["x-user-credits"] == "4"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert int(response.headers["x-processing-time"]) >= 0
    assert response.headers["x-ratelimit-limit"] == "100"
    assert response.headers["x-ratelimit-remaining"] == "99"
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (600, 400))
    alpha = image.getchannel("A")
    assert alpha.getextrema() == (0, 255)  # a background cut away, a subject kept
    assert balance(store, key) == 4


def test_defaults_trailing_slash_and_options_reach_the_engine(url, store, small_png):
    key = store.create("bob@example.com", 5)
    # No trailing slash, no options: the contract's defaults (webp, with the mask).
    first = post(url, key, small_png, path="/api/remove-background", mode="fast")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(first.content)).format == "WEBP"
    assert Image.open(io.BytesIO(first.content)).mode == "RGBA"
    # includeMask=false: the background is filled, so there is no alpha channel at all.
    second = post(url, key, small_png, mode="fast", outputFormat="png", includeMask="false",
                  smoothEdges="0", preserveShadows="yes")
    assert second.status_code == 200, second.text
    assert Image.open(io.BytesIO(second.content)).mode == "RGB"
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert [first.headers["x-user-credits"], second.headers["x-user-credits"]] == ["4", "3"]
    assert balance(store, key) == 3


def truncated(samples: Path) -> bytes:
    return (samples / "coffee.png").read_bytes()[:4000]


BAD_REQUESTS = {
    "missing file": (lambda s, png: None, {"mode": "fast"}, "missing file"),
    "unknown mode": (lambda s, png: png, {"mode": "turbo"}, "invalid mode 'turbo'"),
    "unknown format": (lambda s, png: png, {"outputFormat": "jpg"}, "invalid outputFormat"),
    "jpeg (not an API format)": (lambda s, png: png, {"outputFormat": "jpeg"},
                                 "invalid outputFormat 'jpeg': use one of png, webp"),
    "includeMask": (lambda s, png: png, {"includeMask": "maybe"}, "invalid includeMask"),
    "smoothEdges": (lambda s, png: png, {"smoothEdges": "2"}, "invalid smoothEdges"),
    "preserveShadows": (lambda s, png: png, {"preserveShadows": ""}, "invalid preserveShadows"),
    "text file": (lambda s, png: b"hello, I am not an image", {}, "unsupported file type"),
    "gif": (lambda s, png: png_bytes(Image.new("RGB", (8, 8)), "GIF"), {},
            "unsupported file type (GIF)"),
    "empty file": (lambda s, png: b"", {}, "empty"),
    "wider than 4000": (lambda s, png: png_bytes(Image.new("RGB", (4001, 2))), {},
                        "4001x2 pixels, the limit is 4000x4000"),
    "40000x40000 header": (lambda s, png: with_png_size(png, 40000, 40000), {}, "too large"),
    "truncated image": (lambda s, png: truncated(s), {"mode": "fast"}, "truncated"),
    "7 KB JPEG claiming 4000x4000": (lambda s, png: with_jpeg_size(jpeg_of(png), 4000, 4000),
                                     {"mode": "fast"}, "truncated"),
}


def jpeg_of(png: bytes) -> bytes:
    return png_bytes(Image.open(io.BytesIO(png)).convert("RGB"), "JPEG")


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_are_400_json_and_cost_nothing(url, store, samples, small_png, case):
    make, fields, message = BAD_REQUESTS[case]
    key = store.create("eve@example.com", 3)
    response = post(url, key, make(samples, small_png), **fields)
    assert response.status_code == 400
    assert message in error_of(response)
    assert balance(store, key) == 3


def test_a_request_that_is_not_multipart_is_400(url, store):
    key = store.create("json@example.com", 3)
    response = httpx.post(url + API, headers={"x-api-key": key}, json={"file": "x"})
    assert response.status_code == 400
    assert "multipart/form-data" in error_of(response)


def test_missing_unknown_and_revoked_keys_are_401(url, store, small_png):
    key = store.create("gone@example.com", 3)
    store.revoke(store.authenticate(key).id)
    forged = key[:17] + ("A" if key[17] != "A" else "B") + key[18:]  # right id, wrong secret
    cases = {None: "missing API key", "": "missing API key", "nonsense": "invalid API key",
             forged: "invalid API key", key: "revoked"}
    for sent, message in cases.items():
        response = post(url, sent, small_png, mode="fast")
        assert response.status_code == 401
        assert message in error_of(response)
        assert "x-user-credits" not in response.headers
    assert balance(store, key) == 3


def test_no_credits_is_403_and_the_balance_never_goes_negative(url, store, small_png):
    key = store.create("poor@example.com", 1)
    assert post(url, key, small_png, mode="fast").status_code == 200
    response = post(url, key, small_png, mode="fast")
    assert response.status_code == 403
    assert "credits" in error_of(response)
    assert balance(store, key) == 0


def test_ten_credits_twenty_simultaneous_requests(url, store, backend, small_png):
    key = store.create("rush@example.com", 10)
    start = threading.Barrier(20)
    responses: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(timeout=120) as client:
            start.wait()
            responses.append(client.post(url + API, headers={"x-api-key": key},
                                          files={"file": ("a.png", small_png)},
                                          data={"mode": "fast"}))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [403] * 10
    # Every success was charged exactly once: the remaining balances it reports are 9, 8, ... 0.
    remaining = sorted(int(r.headers["x-user-credits"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(10))
    info = store.authenticate(key)
    assert (info.credits, info.used) == (0, 10)
    # Ten images were wanted at once; the server worked on at most max_concurrency=2 of them.
    assert 1 <= backend.peak <= 2


class BrokenSession:
    """A backend whose model fails, as a corrupt model file or an out-of-memory error would."""

    name = "broken"

    def process(self, data, options):
        raise RuntimeError("the model crashed")

    def close(self) -> None:
        pass


def test_processing_failure_is_500_with_request_id_and_refunded(store, small_png, caplog):
    key = store.create("unlucky@example.com", 2)
    caplog.set_level(logging.INFO, logger="bgremove.server")
    with serve_app(create_app(store, session=BrokenSession())) as base:
        response = post(base, key, small_png)
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert request_id in error_of(response)
    assert balance(store, key) == 2
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert request_id in logged and "the model crashed" in logged
    assert key not in logged and key not in caplog.text


class DatabaseAway(SqliteKeyStore):
    """A key store whose database is away whenever `away` is set (as during a restart)."""

    away = False

    def _check(self) -> None:
        if self.away:
            raise StoreUnavailable("key database: connection refused")

    def release(self, request_id: str) -> int | None:
        self._check()
        return super().release(request_id)

    def heartbeat(self, replica: str) -> None:
        self._check()
        super().heartbeat(replica)


def test_a_credit_that_could_not_be_given_back_goes_back_once_the_database_answers(
        tmp_path, small_png):
    store = DatabaseAway(tmp_path / "keys.sqlite3")
    key = store.create("outage@example.com", 2)

    class FailsWhileTheDatabaseIsAway(BrokenSession):
        def process(self, data, options):
            store.away = True  # the database goes away while the image is being processed
            raise RuntimeError("the model crashed")

    app = create_app(store, session=FailsWhileTheDatabaseIsAway(), replica_timeout=1.0)
    with serve_app(app) as base:
        assert post(base, key, small_png).status_code == 500
        assert balance(store, key) == 1  # held: it cannot be given back while the database is away
        store.away = False
        deadline = time.monotonic() + 10
        while balance(store, key) != 2:
            assert time.monotonic() < deadline, "the credit never came back"
            time.sleep(0.05)


def test_rate_limit_with_retry_after(store, backend):
    key, other = store.create("fast@example.com", 3), store.create("calm@example.com", 3)
    with serve_app(create_app(store, rate_limit=5, rate_window=2.0, session=backend)) as base:
        seen = [post(base, key, None) for _ in range(5)]  # cheap 400s count as requests too
        assert [r.headers["x-ratelimit-remaining"] for r in seen] == ["4", "3", "2", "1", "0"]
        refused = post(base, key, None)
        assert refused.status_code == 429
        assert "rate limit" in error_of(refused)
        assert refused.headers["x-ratelimit-limit"] == "5"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 2
        assert post(base, other, None).status_code == 400  # limits are per key
        time.sleep(retry_after)
        assert post(base, key, None).status_code == 400  # let through again
    assert balance(store, key) == 3


def test_oversize_upload_is_refused(url, store):
    key = store.create("big@example.com", 3)
    eleven_mb = b"\xff\xd8\xff" + bytes(11_000_000)
    response = post(url, key, eleven_mb)
    assert response.status_code == 400
    assert "too large" in error_of(response)
    assert balance(store, key) == 3


def raw_request(url: str, head: str, body_parts, read_timeout: float = 10) -> tuple[int, dict]:
    """Send a request by hand, stop sending where `body_parts` ends (finished or not), and read
    the answer: it shows what the server decided before the upload was complete."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=read_timeout) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head_part, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_part.split()[1])
    return status, json.loads(body)


def test_oversize_upload_is_refused_before_it_arrives(url, store):
    key = store.create("huge@example.com", 3)
    boundary = "b0undary"
    preamble = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    common = (f"POST {API} HTTP/1.1\r\nHost: test\r\nx-api-key: {key}\r\n"
              f"Content-Type: multipart/form-data; boundary={boundary}\r\n")
    # Declared too large: answered from the headers, with only 64 KB of the 11 MB sent.
    status, body = raw_request(url, common + "Content-Length: 11000000\r\n\r\n",
                               [preamble, bytes(65536)])
    assert (status, "too large" in body["error"]) == (400, True)

    # Chunked, no length given: counted while reading and refused past the limit, with the
    # upload still unfinished (no final chunk is ever sent).
    def chunks():
        yield b"%x\r\n%s\r\n" % (len(preamble), preamble)
        block = bytes(256 * 1024)
        for _ in range(44):  # 11 MB
            yield b"%x\r\n%s\r\n" % (len(block), block)

    status, body = raw_request(url, common + "Transfer-Encoding: chunked\r\n\r\n", chunks())
    assert (status, "too large" in body["error"]) == (400, True)
    assert balance(store, key) == 3


def test_a_slow_upload_does_not_block_other_clients(url, store, small_png):
    key = store.create("slow@example.com", 3)
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port)) as stalled:
        stalled.sendall(
            f"POST {API} HTTP/1.1\r\nHost: test\r\nx-api-key: {key}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 500000\r\n\r\n--x\r\n"
            .encode()
        )  # ... and then nothing more, for as long as the next request takes
        assert post(url, key, small_png, mode="fast").status_code == 200
        assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert balance(store, key) == 2


def test_cors_preflight_and_exposed_headers(url, store, small_png):
    preflight = httpx.options(url + API, headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    })
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]

    key = store.create("browser@example.com", 2)
    response = httpx.post(url + API, headers={"x-api-key": key, "Origin": ORIGIN},
                          files={"file": ("a.png", small_png)}, data={"mode": "fast"},
                          timeout=120)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = response.headers["access-control-expose-headers"].lower()
    for header in ("x-user-email", "x-user-credits", "x-request-id", "x-processing-time"):
        assert header in exposed

    elsewhere = httpx.options(url + API, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key"})
    assert "access-control-allow-origin" not in elsewhere.headers


def test_health_and_framework_errors_are_json(url):
    health = httpx.get(url + "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert health.headers["x-request-id"]
    assert httpx.get(url + "/nowhere").status_code == 404
    assert error_of(httpx.get(url + "/nowhere"))
    wrong_method = httpx.get(url + API)
    assert wrong_method.status_code == 405 and error_of(wrong_method)


def test_access_log_is_one_json_line_per_request_without_the_key(url, store, small_png, caplog):
    key = store.create("logged@example.com", 2)
    caplog.set_level(logging.INFO, logger="bgremove.server.access")
    ok = post(url, key, small_png, mode="fast")
    denied = post(url, "bgr_000000000000_" + "x" * 43, small_png)
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "bgremove.server.access"]
    by_id = {line["request_id"]: line for line in lines}
    line = by_id[ok.headers["x-request-id"]]
    assert (line["method"], line["path"], line["status"]) == ("POST", API, 200)
    assert line["key_id"] == store.authenticate(key).id and line["ms"] > 0
    assert by_id[denied.headers["x-request-id"]]["status"] == 401
    assert key not in caplog.text


def test_a_nul_byte_in_the_key_gets_the_json_error(url, store):
    """h11 refuses the request before the app sees it; the answer still has the API's shape, and
    never echoes the header (it may hold a key)."""
    key = store.create("nul@example.com", 1)
    address = urlsplit(url)
    # h11 refuses NUL (400); other control characters reach the app and are not a key (401).
    # `Connection: close`: the answer is read to the end of the connection, which a 401 would
    # otherwise keep open for the keep-alive timeout (5 s each).
    for bad, status in ((key[:10] + "\x00" + key[10:], 400), (key + "\x01", 401),
                        ("\x7f" + key, 401)):
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(f"POST {API} HTTP/1.1\r\nHost: test\r\nx-api-key: {bad}\r\n"
                         "Connection: close\r\nContent-Length: 0\r\n\r\n".encode("latin-1"))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d" % status)
        assert b"content-type: application/json" in head.lower()
        assert re.search(rb"x-request-id: [0-9a-f]{32}", head.lower())
        assert ("header" if status == 400 else "invalid API key") in json.loads(body)["error"]
        assert key[4:].encode() not in answer
    assert balance(store, key) == 1


def test_openapi_describes_the_form_the_key_and_the_answers(url):
    spec = httpx.get(url + "/openapi.json").json()
    operation = spec["paths"][API]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    fields = form["properties"]
    assert fields["file"]["format"] == "binary"
    assert (fields["mode"]["enum"], fields["mode"]["default"]) == (
        ["fast", "balanced", "quality"], "balanced")
    assert (fields["outputFormat"]["enum"], fields["outputFormat"]["default"]) == (
        ["png", "webp"], "webp")
    assert {name: fields[name]["default"] for name in
            ("includeMask", "smoothEdges", "preserveShadows")} == {
        "includeMask": True, "smoothEdges": True, "preserveShadows": False}
    [scheme] = spec["components"]["securitySchemes"].values()
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-api-key")
    assert operation["security"] == [{name: []} for name in
                                      spec["components"]["securitySchemes"]]
    ok = operation["responses"]["200"]
    assert set(ok["content"]) == {"image/png", "image/webp"}
    assert {"x-user-credits", "x-request-id"} <= set(ok["headers"])
    for status in ("400", "401", "403", "429", "500"):
        error = operation["responses"][status]["content"]["application/json"]["schema"]
        assert error["properties"] == {"error": {"type": "string",
                                                 "description": "What went wrong."}}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "422" not in operation["responses"]  # FastAPI's default; ours are 400s
    assert API.rstrip("/") not in spec["paths"]  # one spelling documented


def test_docs_page_works_offline(url):
    page = httpx.get(url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for word in ("x-api-key", "outputFormat", "preserveShadows", "fast | balanced | quality",
                 "image/webp", "/openapi.json", "429"):
        assert word in text
    # Nothing fetched from elsewhere (no CDN): no script, no external stylesheet or image.
    assert "<script" not in text and "src=" not in text and "<link" not in text


class Recording:
    """A backend that remembers what it was asked to do."""

    name = "recording"

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def process(self, data, options):
        self.calls.append((Image.open(io.BytesIO(data)).format, options))
        return self.inner.process(data, options)

    def close(self) -> None:
        pass


def test_warm_up_runs_every_mode_codec_and_path(backend):
    from bgremove.options import API_OUTPUT_FORMATS, Mode
    from bgremove.server.sizing import warm_up

    recording = Recording(backend)
    warm_up(recording)
    inputs = {fmt for fmt, _ in recording.calls}
    options = [o for _, o in recording.calls]
    assert inputs == {"JPEG", "PNG", "WEBP"}
    assert {o.mode for o in options} == set(Mode)
    assert {o.output_format for o in options} == set(API_OUTPUT_FORMATS)
    assert {o.include_mask for o in options} == {True, False}
    assert any(o.preserve_shadows for o in options)
