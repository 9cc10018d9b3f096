"""Keep a long-running server's memory near its working size (glibc's malloc).

A server sees images of every size, on whichever worker thread is free. By default glibc raises
its mmap threshold to the size of the largest block freed (up to 32 MB), so after the first big
photo the buffers of the next ones come from the thread's heap arena instead of their own mapping,
and a freed hole in an arena is rarely handed back: under a soak the resident size crept up with
every large image. Two settings bound it, measured with `benchmarks/serve.py` (BENCHMARKS.md):

- a fixed 1 MiB mmap threshold: image-sized buffers are always their own mapping, returned to the
  system when freed (small objects stay in the arenas, where they belong);
- `malloc_trim(0)` after each image, which returns the free tops of the arenas (well under a
  millisecond).

What remains is the working size: the model, and onnxruntime's arena for each image in flight.
Elsewhere than glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 20


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


class MemoryKeeper:
    """Sets the threshold once per process (`bound`), trims after each image (`after_image`)."""

    _configured = False
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._libc = _glibc()

    def bound(self) -> None:
        with MemoryKeeper._lock:
            if self._libc is not None and not MemoryKeeper._configured:
                self._libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                MemoryKeeper._configured = True

    def after_image(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)
