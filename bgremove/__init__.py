"""bgremove: remove image backgrounds in bulk, offline or through the Background Removal API.

    import bgremove

    cutout = bgremove.remove(open("photo.jpg", "rb").read())        # WebP bytes
    with bgremove.new_session() as session:                        # a model to reuse
        image = session.remove(pil_image, mode="quality")           # a PIL image, RGBA
    summary = bgremove.remove_batch(["photos/"], "cutouts/")         # files and folders

What `__all__` lists is the public API and follows semantic versioning. Names load on first use,
so `import bgremove` (and `bgremove --help`) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

# The public names are written three times, each for its reader: `_PUBLIC` for the lazy loader
# below, `__all__` and the TYPE_CHECKING imports as literals, the only form type checkers read.
# tests/test_api_surface.py keeps the three in step.

# name -> the module that defines it
_PUBLIC = {
    "remove": "bgremove.api",
    "new_session": "bgremove.api",
    "remove_batch": "bgremove.api",
    "Session": "bgremove.backends",
    "Result": "bgremove.backends",
    "LocalSession": "bgremove.backends.local",
    "RemoteSession": "bgremove.backends.remote",
    "Batch": "bgremove.engine",
    "Summary": "bgremove.engine",
    "Outcome": "bgremove.engine",
    "Status": "bgremove.engine",
    "Shard": "bgremove.discover",
    "RemovalOptions": "bgremove.options",
    "Mode": "bgremove.options",
    "OutputFormat": "bgremove.options",
    "BgRemoveError": "bgremove.errors",
    "UsageError": "bgremove.errors",
    "FileFailed": "bgremove.errors",
    "ImageError": "bgremove.errors",
    "NotAnImage": "bgremove.errors",
    "StopBatch": "bgremove.errors",
    "AuthenticationFailed": "bgremove.errors",
    "OutOfCredits": "bgremove.errors",
    "CreditLimitReached": "bgremove.errors",
    "OptionError": "bgremove.errors",
    "SetupError": "bgremove.errors",
    "ModelUnavailable": "bgremove.errors",
}

__all__ = [
    "__version__",
    "remove",
    "new_session",
    "remove_batch",
    "Session",
    "Result",
    "LocalSession",
    "RemoteSession",
    "Batch",
    "Summary",
    "Outcome",
    "Status",
    "Shard",
    "RemovalOptions",
    "Mode",
    "OutputFormat",
    "BgRemoveError",
    "UsageError",
    "FileFailed",
    "ImageError",
    "NotAnImage",
    "StopBatch",
    "AuthenticationFailed",
    "OutOfCredits",
    "CreditLimitReached",
    "OptionError",
    "SetupError",
    "ModelUnavailable",
]

if TYPE_CHECKING:
    from bgremove.api import new_session, remove, remove_batch
    from bgremove.backends import Result, Session
    from bgremove.backends.local import LocalSession
    from bgremove.backends.remote import RemoteSession
    from bgremove.discover import Shard
    from bgremove.engine import Batch, Outcome, Status, Summary
    from bgremove.errors import (
        AuthenticationFailed,
        BgRemoveError,
        CreditLimitReached,
        FileFailed,
        ImageError,
        ModelUnavailable,
        NotAnImage,
        OptionError,
        OutOfCredits,
        SetupError,
        StopBatch,
        UsageError,
    )
    from bgremove.options import Mode, OutputFormat, RemovalOptions


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'bgremove' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
