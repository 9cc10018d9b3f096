"""The name of the file a shell redirect points stdout at (`bgremove - < x.jpg > y.png`), so its
extension can pick the format as `-o y.png` does. Light: the CLI reads it before anything loads."""

from __future__ import annotations

import os
import stat
import sys


def file_name(fd: int) -> str | None:
    """The path of the regular file open as `fd`, or None when it is no regular file (a pipe, a
    terminal) or its name cannot be read on this system."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if sys.platform == "darwin":
            import fcntl

            raw = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))
            return os.fsdecode(raw.split(b"\0", 1)[0]) or None
        name = os.readlink(f"/proc/self/fd/{fd}")
    except (OSError, AttributeError, ValueError):
        return None
    # Linux names an unlinked file `/path (deleted)`, and other things `pipe:[...]`.
    return name if name.startswith("/") and not name.endswith(" (deleted)") else None


def stdout_file_name() -> str | None:
    try:
        return file_name(sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):  # replaced or closed stdout
        return None
