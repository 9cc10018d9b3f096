"""The endpoint's credit flow, one request in the order its checks run (cheapest and least
revealing first, so a refused request costs almost nothing): key -> rate limit -> credits -> body
size (from Content-Length, then counted while reading) -> form fields -> file type by content and
pixel size from the image header -> reserve one credit -> run the session on a worker thread ->
settle the credit -> the image. A credit reserved for work that then fails is given back.

Keys, credits and the rate limit live in the store (SQLite or PostgreSQL), never in this process,
so any number of replicas can serve one database. Each replica heartbeats into the store and
sweeps it: the credits reserved by a replica that died mid-request are given back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import anyio
import anyio.to_thread
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from bgremove.backends import Session
from bgremove.contract import MAX_FILE_BYTES, check_upload
from bgremove.errors import ImageError
from bgremove.options import RemovalOptions
from bgremove.server.memory import MemoryKeeper
from bgremove.server.middleware import BodyTooLarge, counting_receive
from bgremove.server.sizing import local_session, warm_up
from bgremove.server.store import KeyInfo, KeyStore, StoreError

# Room in the request body for the other form fields and the multipart framing around the file.
MAX_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024
TOO_LARGE = "file too large: the limit is 10 MB"
# A replica silent for this long is presumed dead, and the credits it reserved are given back.
REPLICA_TIMEOUT = 60.0

log = logging.getLogger("bgremove.server")


class ApiError(Exception):
    """Ends a request with `{"error": message}` and this status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


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
        counted = Request(request.scope, counting_receive(request.receive, MAX_BODY_BYTES))
        try:
            form = await counted.form(max_files=1, max_fields=16)
        except BodyTooLarge:
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
