"""The Background Removal API as an ASGI app, answering with the local engine.

One request, in the order its checks run (cheapest and least revealing first, so a refused request
costs almost nothing): key -> rate limit -> credits -> body size (from Content-Length, then counted
while reading) -> form fields -> file type by content and pixel size from the image header ->
reserve one credit -> run the session on a worker thread -> settle the credit -> the image. A
credit reserved for work that then fails is given back.

Keys, credits and the rate limit live in the store (SQLite or PostgreSQL), never in this process,
so any number of replicas of this app can serve one database. Each replica heartbeats into the
store and sweeps it: the credits reserved by a replica that died mid-request are given back.

The image work is the same `LocalSession` and `RemovalOptions` the CLI uses; this module only speaks
HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.security import APIKeyHeader
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgremove import __version__
from bgremove.backends import Session
from bgremove.contract import MAX_FILE_BYTES, RATE_LIMIT, RATE_WINDOW, check_upload
from bgremove.errors import ImageError
from bgremove.options import RemovalOptions
from bgremove.parallel import plan_local
from bgremove.server import openapi
from bgremove.server.memory import MemoryKeeper
from bgremove.server.store import KeyInfo, KeyStore, StoreError, open_store

# Room in the request body for the other form fields and the multipart framing around the file.
MAX_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024
TOO_LARGE = "file too large: the limit is 10 MB"
# A replica silent for this long is presumed dead, and the credits it reserved are given back.
REPLICA_TIMEOUT = 60.0

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


def default_workers() -> int:
    """Images processed at once by default: the CLI's choice for this machine (parallel.plan: the
    cores, as many as memory holds), sized for quality mode, the costliest a client may ask."""
    return plan_local(None, None, mode="quality")[0]


def local_session(concurrency: int, model: str | None = None) -> Session:
    """The engine, sized for a server processing `concurrency` images at once: the one place the
    server obtains it."""
    from bgremove.api import open_local

    # The cores are split between the images in flight rather than each inference given all of
    # them: a busy server then does not oversubscribe the CPU.
    return open_local(model, workers=concurrency)[0]


def warm_up(session: Session) -> None:
    """Run every mode's code path once, so the first request is as fast as the ones after it.

    Lazy imports (scipy for the refined modes), onnxruntime's first run, and each codec's first use
    would otherwise all land on the first client. Three small images between them decode JPEG,
    PNG and WebP, run the three modes, and encode PNG and WebP, with and without the mask.
    """
    import io

    import numpy as np
    from PIL import Image

    from bgremove.options import Mode, OutputFormat

    y, x = np.mgrid[0:240, 0:320]
    disc = ((x - 160) ** 2 + (y - 120) ** 2 < 80**2)[:, :, None]
    pixels = np.where(disc, [200, 60, 40], [235, 235, 230]).astype(np.uint8)
    runs = [
        ("JPEG", RemovalOptions(mode=Mode.fast, output_format=OutputFormat.png)),
        ("PNG", RemovalOptions(mode=Mode.balanced, output_format=OutputFormat.webp,
                               preserve_shadows=True)),
        ("WEBP", RemovalOptions(mode=Mode.quality, output_format=OutputFormat.png,
                                include_mask=False, smooth_edges=False)),
    ]
    for fmt, options in runs:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt)
        session.process(buffer.getvalue(), options)


class RemovalService:
    """The state behind the endpoint: the store, this replica's name, worker slots, the session."""

    def __init__(self, store: KeyStore, *, rate_limit: int, rate_window: float,
                 concurrency: int, session: Session | None, model: str | None,
                 replica_timeout: float, owns_store: bool):
        if rate_limit < 0 or rate_window <= 0:
            raise ValueError("the rate limit must be >= 0 and its window > 0 seconds")
        self.store = store
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.concurrency = concurrency
        self.replica_timeout = replica_timeout
        # Names this process in the charges table; host and pid help an operator reading it.
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._owns_store = owns_store
        self._model = model
        # At most `concurrency` images are decoded, segmented and encoded at once; requests
        # beyond that wait for a slot without holding a thread.
        self.slots = anyio.CapacityLimiter(concurrency)
        self.memory = MemoryKeeper()
        self._session = session
        self._owns_session = False
        self._session_lock = threading.Lock()
        # Credits of failed requests that could not be given back (the database was away):
        # given back by keep_alive as soon as it answers again.
        self.owed: set[str] = set()

    def session(self) -> Session:
        """The session, loading and warming up the model on first use (on a worker thread)."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    session = local_session(self.concurrency, self._model)
                    warm_up(session)
                    self._session = session
                    self._owns_session = True
        return self._session

    async def start(self) -> None:
        """Before the first request: the model loaded and warm, this replica registered, and
        whatever a dead replica left reserved given back."""
        self.memory.bound()
        await anyio.to_thread.run_sync(self.session)
        await anyio.to_thread.run_sync(self.store.heartbeat, self.replica)
        await self._sweep()

    async def keep_alive(self) -> None:
        """Heartbeat and sweep, for as long as the app runs."""
        while True:
            await anyio.sleep(self.replica_timeout / 4)
            try:
                await anyio.to_thread.run_sync(self.store.heartbeat, self.replica)
                await anyio.to_thread.run_sync(self.give_back_owed)
                await self._sweep()
            except StoreError as exc:  # the database is away: requests will say so
                log.warning("heartbeat failed: %s", exc)

    def give_back_owed(self) -> None:
        for request_id in sorted(self.owed):
            self.store.release(request_id)  # a StoreError leaves the rest owed till next time
            self.owed.discard(request_id)
            log.warning("request %s: its credit was given back now that the key database "
                        "answers again", request_id)

    async def _sweep(self) -> None:
        given = await anyio.to_thread.run_sync(self.store.sweep, self.replica_timeout)
        if given:
            log.warning("gave back %d credit(s) reserved by replicas that stopped responding",
                        given)

    def close(self) -> None:
        try:
            given = self.store.retire(self.replica)
            if given:
                log.warning("gave back %d credit(s) still reserved at shutdown", given)
        except StoreError as exc:
            log.warning("could not deregister this replica: %s", exc)
        if self._owns_session and self._session is not None:
            self._session.close()
        if self._owns_store:
            self.store.close()

    async def remove_background(self, request: Request) -> Response:
        info = await self._authenticate(request)
        if self.rate_limit:
            decision = await anyio.to_thread.run_sync(
                self.store.hit, info.id, self.rate_limit, self.rate_window
            )
            request.state.rate_headers = decision.headers()
            if not decision.allowed:
                raise ApiError(
                    429,
                    f"rate limit exceeded: at most {self.rate_limit} requests per "
                    f"{self.rate_window:g} s; retry after {decision.headers()['Retry-After']} s",
                )
        if info.credits <= 0:  # a cheap early answer; the atomic check is reserve() below
            raise ApiError(403, "insufficient credits: this key has no credits left")

        data, options = await self._read_upload(request)
        try:
            check_upload(data)
        except ImageError as exc:
            raise ApiError(400, str(exc)) from None

        request_id = request.state.request_id
        started = time.perf_counter()
        remaining = await anyio.to_thread.run_sync(
            self.store.reserve, info.id, request_id, self.replica
        )
        if remaining is None:
            raise ApiError(403, "insufficient credits: this key has no credits left")
        try:
            image = await anyio.to_thread.run_sync(
                self._process, data, options, limiter=self.slots
            )
            if not await anyio.to_thread.run_sync(self.store.settle, request_id):
                log.warning("request %s: its credit was given back by a sweeper (this replica "
                            "was presumed dead); delivered anyway", request_id)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self.store.release, request_id)
                except StoreError as store_error:
                    self.owed.add(request_id)
                    log.warning("request %s: could not give its credit back now (%s); it goes "
                                "back as soon as the key database answers", request_id,
                                store_error)
            if isinstance(exc, ImageError):  # e.g. a truncated file: the upload's fault
                raise ApiError(400, str(exc)) from None
            if isinstance(exc, Exception) and not isinstance(exc, StoreError):
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
        try:
            return self.session().process(data, options).data
        finally:
            self.memory.after_image()

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
            try:
                options = RemovalOptions.from_form(form)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            upload = form.get("file")
            if upload is None:
                raise ApiError(400, "missing file: send the image in the multipart field 'file'")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "'file' must be a file upload, not a text field")
            return await upload.read(), options
        finally:
            await form.close()


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


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.state.request_id
    log.error("key database failed (request id %s): %s", request_id, exc)
    return _error(500, f"the key database is unavailable; request id {request_id}")


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


# Documents the header in the OpenAPI description; the check itself is _authenticate's, so that a
# missing key is answered in the API's error format.
_API_KEY = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="ApiKey",
                        description="Your API key (`bgremove keys create`).")


def create_app(
    store: KeyStore | str | os.PathLike[str],
    *,
    rate_limit: int = RATE_LIMIT,
    rate_window: float = RATE_WINDOW,
    max_concurrency: int | None = None,
    cors_origins: Sequence[str] = (),
    session: Session | None = None,
    model: str | None = None,
    replica_timeout: float = REPLICA_TIMEOUT,
) -> FastAPI:
    """The API as an ASGI app, serving the keys in `store` (a KeyStore, or where one is: a path,
    `sqlite:///PATH` or `postgresql://...`).

    `rate_limit` requests per `rate_window` seconds per key (0: no limit), counted in the store,
    so across every replica; at most `max_concurrency` images processed at once (default: as
    `bgremove` sizes its workers for this machine); browsers on `cors_origins` (or "*") may call
    it. `session` defaults to the local engine with `model` (the bundled one by default), loaded
    and warmed up before the server takes requests. A replica silent for `replica_timeout`
    seconds is presumed dead and its reserved credits are given back.
    """
    owns_store = not isinstance(store, KeyStore)
    service = RemovalService(
        open_store(store) if owns_store else store,
        rate_limit=rate_limit,
        rate_window=rate_window,
        concurrency=max_concurrency or default_workers(),
        session=session,
        model=model,
        replica_timeout=replica_timeout,
        owns_store=owns_store,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(service.keep_alive)
                yield
                tasks.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="Background Removal API (bgremove)",
        version=__version__,
        description=openapi.DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # the page below works offline; Swagger UI would load from a CDN
        redoc_url=None,
    )
    app.state.service = service
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    # Both spellings answer directly: a redirect would make clients send the upload twice.
    for path in ("/api/remove-background/", "/api/remove-background"):
        app.add_api_route(
            path, service.remove_background, methods=["POST"],
            include_in_schema=path.endswith("/"),
            summary="Remove the background of an image",
            description=openapi.ENDPOINT,
            dependencies=[Security(_API_KEY)],
            response_class=Response,
            responses=openapi.responses(),
            openapi_extra=openapi.request_body(),
            operation_id="removeBackground",
        )

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/health", health, methods=["GET"], summary="Liveness check",
                      operation_id="health")

    async def docs() -> HTMLResponse:
        return HTMLResponse(openapi.docs_page(app.openapi()))

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)

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
