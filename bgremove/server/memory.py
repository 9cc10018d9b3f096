"""Keep a long-running server's memory bounded (glibc malloc tuning)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


class MemoryKeeper:
    def __init__(self) -> None:
        self.variant = os.environ.get("BGREMOVE_MEM_EXPERIMENT", "")
        self.libc = _libc()

    def configure(self) -> None:
        if self.libc is None:
            return
        if "mmap" in self.variant:
            self.libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
        if "arena" in self.variant:
            self.libc.mallopt(M_ARENA_MAX, 2)

    def after(self, data: bytes) -> None:
        if self.libc is not None and "trim" in self.variant:
            self.libc.malloc_trim(0)
