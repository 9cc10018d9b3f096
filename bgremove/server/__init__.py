"""The self-hosted Background Removal API: `create_app()` for uvicorn or any ASGI server.

`create_app` is imported on first use, so the key store (and `bgremove keys`) works without the
`server` extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgremove.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from bgremove.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
