"""The backends: each turns image bytes and RemovalOptions into the encoded cut-out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bgremove.options import RemovalOptions


@dataclass
class Result:
    """One processed image, with what the API told us about it (remote backend only)."""

    data: bytes
    credits_spent: int = 0
    credits_remaining: int | None = None
    request_id: str | None = None


class Backend(Protocol):
    """Everything the engine needs from a backend. `process` must be safe to call from threads."""

    name: str

    def process(self, data: bytes, options: RemovalOptions) -> Result: ...

    def close(self) -> None: ...
