"""The Background Removal API as an ASGI app, answering with the local engine.

One request, in the order its checks run (cheapest and least revealing first, so a refused request
costs almost nothing): key -> rate limit -> credits -> body size (from Content-Length, then counted
while reading) -> form fields -> file type by content and pixel size from the image header ->
reserve one credit -> run the backend on a worker thread -> the image. A credit reserved for work
that then fails is given back.

The image work is the same `LocalBackend` and `RemovalOptions` the CLI uses; this module only speaks
HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgremove import __version__
from bgremove.backends import Session as Backend
from bgremove.contract import CONTENT_TYPES, MAX_FILE_BYTES, MAX_SIDE, RATE_LIMIT, RATE_WINDOW
from bgremove.errors import ImageError
from bgremove.imaging.decode import SNIFF_BYTES, open_image, sniff
from bgremove.options import Mode, OutputFormat, RemovalOptions, parse_bool
from bgremove.server.ratelimit import RateLimiter
from bgremove.server.store import KeyInfo, KeyStore

# Room in the request body for the other form fields and the multipart framing around the file.
MAX_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024
TOO_LARGE = "file too large: the limit is 10 MB"

# Response headers a browser page on another origin may read.
EXPOSED_HEADERS = (
    "x-user-email", "x-user-credits", "x-request-id", "x-processing-time",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
)

log = logging.getLogger("bgremove.server")
access_log = logging.getLogger("bgremove.server.access")


class ApiError(Exception):
    """Ends a request with `{"error": message}` and this status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _BodyTooLarge(Exception):
    pass


def _counting_receive(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing the body once more than `limit` bytes have come in, whatever
    Content-Length claimed (or without one, for chunked uploads)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
        return message

    return counted


def default_concurrency() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def local_backend(concurrency: int, model: str | None = None) -> Backend:
    """The local engine sized for a server processing `concurrency` images at once."""
    import bgremove

    # Split the cores between the images in flight rather than give each inference all of them:
    # a busy server then does not oversubscribe the CPU.
    return bgremove.new_session(model, threads=max(1, default_concurrency() // concurrency))


class RemovalService:
    """The state behind the endpoint: keys, rate limit, worker slots and the backend."""

    def __init__(self, store: KeyStore, limiter: RateLimiter, concurrency: int,
                 backend: Backend | None):
        self.store = store
        self.limiter = limiter
        self.concurrency = concurrency
        # At most `concurrency` images are decoded, segmented and encoded at once; requests
        # beyond that wait for a slot without holding a thread.
        self.slots = anyio.CapacityLimiter(concurrency)
        self._backend = backend
        self._owns_backend = False
        self._backend_lock = threading.Lock()

    def backend(self) -> Backend:
        """The backend, loading the bundled model on first use (on a worker thread)."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = local_backend(self.concurrency)
                    self._owns_backend = True
        return self._backend

    def close(self) -> None:
        if self._owns_backend and self._backend is not None:
            self._backend.close()

    async def remove_background(self, request: Request) -> Response:
        info = await self._authenticate(request)
        if self.limiter.enabled:
            decision = self.limiter.hit(info.id)
            request.state.rate_headers = decision.headers()
            if not decision.allowed:
                raise ApiError(
                    429,
                    f"rate limit exceeded: at most {self.limiter.limit} requests per "
                    f"{self.limiter.window:g} s; retry after {decision.headers()['Retry-After']} s",
                )
        if info.credits <= 0:  # a cheap early answer; the atomic check is charge() below
            raise ApiError(403, "insufficient credits: this key has no credits left")

        data, options = await self._read_upload(request)
        self._check_image(data)

        started = time.perf_counter()
        remaining = await anyio.to_thread.run_sync(self.store.charge, info.id)
        if remaining is None:
            raise ApiError(403, "insufficient credits: this key has no credits left")
        try:
            image = await anyio.to_thread.run_sync(
                self._process, data, options, limiter=self.slots
            )
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.store.refund, info.id)
            if isinstance(exc, ImageError):  # e.g. a truncated file: the upload's fault
                raise ApiError(400, str(exc)) from None
            if isinstance(exc, Exception):
                request_id = request.state.request_id
                log.exception("processing failed (request id %s, key %s)", request_id, info.id)
                raise ApiError(
                    500, f"processing the image failed; request id {request_id}"
                ) from None
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        headers = {
            **getattr(request.state, "rate_headers", {}),
            "x-user-email": info.email,
            "x-user-credits": str(remaining),
            "x-processing-time": str(round(elapsed_ms)),
        }
        return Response(image, media_type=options.output_format.mime_type, headers=headers)

    def _process(self, data: bytes, options: RemovalOptions) -> bytes:
        return self.backend().process(data, options).data

    async def _authenticate(self, request: Request) -> KeyInfo:
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            raise ApiError(401, "missing API key: send it in the x-api-key header")
        info = await anyio.to_thread.run_sync(self.store.authenticate, key)
        if info is None:
            raise ApiError(401, "invalid API key")
        request.state.key_id = info.id  # for the access log; never the key itself
        if not info.active:
            raise ApiError(401, "this API key has been revoked")
        return info

    async def _read_upload(self, request: Request) -> tuple[bytes, RemovalOptions]:
        content_type = request.headers.get("content-type", "").lower()
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(400, "the request must be multipart/form-data, with the image in 'file'")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(400, TOO_LARGE)  # refused before reading a byte of the body

        # Starlette spools file parts to disk beyond 1 MB, and the counting receive stops the
        # upload at the limit, so memory stays bounded whatever the client sends.
        counted = Request(request.scope, _counting_receive(request.receive, MAX_BODY_BYTES))
        try:
            form = await counted.form(max_files=1, max_fields=16)
        except _BodyTooLarge:
            raise ApiError(400, TOO_LARGE) from None
        except HTTPException as exc:
            raise ApiError(400, f"malformed multipart body: {exc.detail}") from None
        except ClientDisconnect:
            raise ApiError(400, "the upload was interrupted") from None
        try:
            options = _options(form)
            upload = form.get("file")
            if upload is None:
                raise ApiError(400, "missing file: send the image in the multipart field 'file'")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "'file' must be a file upload, not a text field")
            return await upload.read(), options
        finally:
            await form.close()

    @staticmethod
    def _check_image(data: bytes) -> None:
        if not data:
            raise ApiError(400, "the file is empty")
        if len(data) > MAX_FILE_BYTES:
            raise ApiError(400, TOO_LARGE)
        kind = sniff(data[:SNIFF_BYTES])
        if kind not in CONTENT_TYPES:
            found = f" ({kind.upper()})" if kind else ""
            raise ApiError(400, f"unsupported file type{found}: send a JPEG, PNG or WebP image")
        try:
            image = open_image(data)  # reads the header only: nothing is decoded yet
        except ImageError as exc:
            raise ApiError(400, str(exc)) from None
        width, height = image.size
        image.close()
        if width > MAX_SIDE or height > MAX_SIDE:
            raise ApiError(
                400, f"image too large: {width}x{height} pixels, the limit is "
                f"{MAX_SIDE}x{MAX_SIDE}"
            )


def _options(form: FormData) -> RemovalOptions:
    """RemovalOptions from the form fields, with the API's defaults for those not sent."""

    def field(name: str, default: str) -> str:
        value = form.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ApiError(400, f"'{name}' must be a text field, not a file")
        return value.strip()

    mode = field("mode", Mode.balanced.value).lower()
    if mode not in Mode._value2member_map_:
        raise ApiError(400, f"invalid mode {mode!r}: use fast, balanced or quality")
    output_format = field("outputFormat", OutputFormat.webp.value).lower()
    if output_format not in OutputFormat._value2member_map_:
        raise ApiError(400, f"invalid outputFormat {output_format!r}: use png or webp")
    flags = {}
    defaults = RemovalOptions()
    for name, default in (("includeMask", defaults.include_mask),
                          ("smoothEdges", defaults.smooth_edges),
                          ("preserveShadows", defaults.preserve_shadows)):
        try:
            flags[name] = parse_bool(field(name, str(default)))
        except ValueError as exc:
            raise ApiError(400, f"invalid {name}: {exc}") from None
    return RemovalOptions(
        mode=Mode(mode),
        output_format=OutputFormat(output_format),
        include_mask=flags["includeMask"],
        smooth_edges=flags["smoothEdges"],
        preserve_shadows=flags["preserveShadows"],
    )


class RequestContext:
    """Gives every request an id (echoed as x-request-id, errors included) and writes one JSON
    access-log line per request. The line names the key by its id: the key itself never appears."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = logged = False

        def write_log() -> None:
            nonlocal logged
            logged = True
            access_log.info(json.dumps({
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "method": scope["method"],
                "path": scope["path"],  # no query string: it is nobody's business either
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "request_id": request_id,
                "key_id": state.get("key_id"),
                "client": (scope.get("client") or [None])[0],
            }))

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                write_log()  # before the last byte leaves: the line exists once the client has it
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error (request id %s)", request_id)
            if not response_started:
                response = _error(500, f"internal server error; request id {request_id}")
                await response(scope, receive, send_with_id)
        finally:
            if not logged:
                write_log()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {**getattr(request.state, "rate_headers", {}), **exc.headers}
    return _error(exc.status, exc.message, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own answers (404, 405, ...) in the API's error format.
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        for error in exc.errors()
    )
    return _error(400, f"invalid request: {problems}")


def create_app(
    store: KeyStore | str | os.PathLike[str],
    *,
    rate_limit: int = RATE_LIMIT,
    rate_window: float = RATE_WINDOW,
    max_concurrency: int | None = None,
    cors_origins: Sequence[str] = (),
    backend: Backend | None = None,
) -> FastAPI:
    """The API as an ASGI app, serving the keys in `store` (a KeyStore or the path of one).

    `rate_limit` requests per `rate_window` seconds per key (0: no limit); at most
    `max_concurrency` images processed at once (default: one per core); browsers on
    `cors_origins` (or "*") may call it. `backend` defaults to the local engine with the bundled
    model, loaded on the first request.
    """
    service = RemovalService(
        store if isinstance(store, KeyStore) else KeyStore(store),
        RateLimiter(rate_limit, rate_window),
        max_concurrency or default_concurrency(),
        backend,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="Background Removal API (bgremove)",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    # Both spellings answer directly: a redirect would make clients send the upload twice.
    for path in ("/api/remove-background/", "/api/remove-background"):
        app.add_api_route(
            path, service.remove_background, methods=["POST"],
            include_in_schema=path.endswith("/"), summary="Remove the background of an image",
        )

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/health", health, methods=["GET"], summary="Liveness check")

    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["x-api-key", "content-type"],
            expose_headers=list(EXPOSED_HEADERS),
            max_age=600,
        )
    app.add_middleware(RequestContext)  # outermost, so every response has an id and a log line
    return app
