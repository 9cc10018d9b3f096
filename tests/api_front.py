"""A test-only ASGI layer in front of the real API app: it records what arrives, and can add
latency or answer chosen requests itself with the faults a real network and server produce."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgremove.backends import Result, Session, SessionBase
from bgremove.options import RemovalOptions

# What the front can do to the request with a given arrival number (0-based):
#   "429"  answer 429 with Retry-After: 1, as a rate-limited server does (nothing charged)
#   "500"  answer 500 without passing the request on (nothing charged)
#   "drop" start a response and close the connection half-way (nothing charged)
#   "slow" wait SLOW seconds, then pass the request on
FAULTS = ("429", "500", "drop", "slow")
SLOW = 1.5


class DroppedConnection(Exception):
    """Raised inside the server after the response has started: uvicorn closes the socket."""


@dataclass
class Arrival:
    at: float
    status: int | None = None


@dataclass
class ApiFront:
    app: ASGIApp
    faults: dict[int, str] = field(default_factory=dict)
    latency: float = 0.0
    arrivals: list[Arrival] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def statuses(self) -> list[int | None]:
        with self._lock:
            return [a.status for a in self.arrivals]

    def times(self) -> list[float]:
        with self._lock:
            return [a.at for a in self.arrivals]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._lock:
            number = len(self.arrivals)
            arrival = Arrival(time.monotonic())
            self.arrivals.append(arrival)
        fault = self.faults.get(number)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                arrival.status = message["status"]
            await send(message)

        if fault == "429":
            await _answer(recording_send, 429, "rate limit exceeded (injected)", retry_after="1")
        elif fault == "500":
            await _answer(recording_send, 500, "internal server error (injected)")
        elif fault == "drop":
            arrival.status = -1
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"image/png"), (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b"\x89PNG", "more_body": True})
            raise DroppedConnection("connection dropped (injected)")
        else:
            if fault == "slow":
                await anyio.sleep(SLOW)
            if self.latency:
                await anyio.sleep(self.latency)
            await self.app(scope, receive, recording_send)


async def _answer(send: Send, status: int, message: str, retry_after: str | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"injected")]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"error": message}).encode()})


class MemoSession(SessionBase):
    """The real session, answering each distinct (image, options) once and from memory after.

    For tests of request pacing: the server then answers as fast as its HTTP side allows, so
    what is measured is the client against the rate cap, not this machine's CPU for the model.
    """

    kind = "local"
    providers = ["CPUExecutionProvider"]
    device_warning = None

    def __init__(self, backend: Session):
        self.backend = backend
        self._answers: dict[tuple[bytes, RemovalOptions], Result] = {}
        self._lock = threading.Lock()

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        key = (hashlib.sha256(data).digest(), options)
        with self._lock:
            if key not in self._answers:
                self._answers[key] = self.backend.process(data, options)
            return self._answers[key]

    def close(self) -> None:
        self.backend.close()
