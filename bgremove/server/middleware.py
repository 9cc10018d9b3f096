"""ASGI middleware under the app: every request gets an id and one JSON access-log line, and an
upload's body is counted as it comes in, so one over the limit is refused whatever it declared."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bgremove.server")
access_log = logging.getLogger("bgremove.server.access")


class BodyTooLarge(Exception):
    pass


def counting_receive(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing the body once more than `limit` bytes have come in, whatever
    Content-Length claimed (or without one, for chunked uploads)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return counted


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
                response = error_response(500, f"internal server error; request id {request_id}")
                await response(scope, receive, send_with_id)
        finally:
            if not logged:
                write_log()


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's answer to a refused or failed request: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)
