"""The backends: each turns image bytes and RemovalOptions into the encoded cut-out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bgremove.options import RemovalOptions

if TYPE_CHECKING:
    from bgremove.config import Settings


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


def open_backend(settings: Settings) -> Backend:
    """The backend the settings ask for, ready to process images."""
    from bgremove.errors import UsageError

    if settings.backend == "local":
        from bgremove.backends.local import LocalBackend

        return LocalBackend(settings.model, settings.threads, settings.device)
    from bgremove.apikey import api_key_from
    from bgremove.backends.remote import RemoteBackend

    key = api_key_from(settings)
    if key is None:
        raise UsageError("--backend remote needs an API key: --api-key-file FILE, the "
                         "BGREMOVE_API_KEY environment variable, api_key in the config file, "
                         "or --api-key KEY")
    return RemoteBackend(settings.api_url, key, rate_limit=settings.rate_limit,
                         rate_window=settings.rate_window)
