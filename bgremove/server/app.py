"""The Background Removal API as an ASGI app, answering with the local engine.

`create_app` builds the FastAPI app: the endpoint (`credits.RemovalService`, which holds the credit
flow), the error handlers that give every answer the API's JSON shape, CORS, and the request
context (`middleware.py`). The image work is the same `LocalSession` and `RemovalOptions` the CLI
uses (`sizing.py`); this package only speaks HTTP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from bgremove import __version__
from bgremove.backends import Session
from bgremove.contract import RATE_LIMIT, RATE_WINDOW
from bgremove.server import openapi, webpage
from bgremove.server.credits import REPLICA_TIMEOUT, ApiError, RemovalService
from bgremove.server.middleware import RequestContext, error_response
from bgremove.server.sizing import default_workers
from bgremove.server.store import KeyStore, StoreError, open_store

# Response headers a browser page on another origin may read.
EXPOSED_HEADERS = (
    "x-user-email", "x-user-credits", "x-request-id", "x-processing-time",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
)


log = logging.getLogger("bgremove.server")



async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {**getattr(request.state, "rate_headers", {}), **exc.headers}
    return error_response(exc.status, exc.message, headers)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.state.request_id
    log.error("key database failed (request id %s): %s", request_id, exc)
    return error_response(500, f"the key database is unavailable; request id {request_id}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own answers (404, 405, ...) in the API's error format.
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        for error in exc.errors()
    )
    return error_response(400, f"invalid request: {problems}")


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
    ui: bool = True,
) -> FastAPI:
    """The API as an ASGI app, serving the keys in `store` (a KeyStore, or where one is: a path,
    `sqlite:///PATH` or `postgresql://...`).

    `rate_limit` requests per `rate_window` seconds per key (0: no limit), counted in the store,
    so across every replica; at most `max_concurrency` images processed at once (default: as
    `bgremove` sizes its workers for this machine); browsers on `cors_origins` (or "*") may call
    it. `session` defaults to the local engine with `model` (the bundled one by default), loaded
    and warmed up before the server takes requests. A replica silent for `replica_timeout`
    seconds is presumed dead and its reserved credits are given back. `ui`: serve the page for
    people at / (webpage.py).
    """
    owns_store = not isinstance(store, KeyStore)
    service = RemovalService(
        store if isinstance(store, KeyStore) else open_store(store),
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
        description=openapi.DESCRIPTION + (webpage.DESCRIPTION if ui else ""),
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
    if ui:
        webpage.add_page(app)

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
