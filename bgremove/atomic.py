"""Atomic writes: a file is written under a temporary name next to its destination, then renamed
over it, so a reader never sees half a file and a run killed mid-write leaves a part file
(`.NAME.XXXXXXXX.part`), never a broken output.

Every writer of an output, a report or a downloaded model goes through here, so a part file has
one shape and `is_part_of` recognises it wherever leftovers are cleaned up. Permissions come from
`os.open`'s mode, which the umask narrows as for any new file: nothing here changes the umask,
which is process-wide and would race other threads' writes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Container
from pathlib import Path

SUFFIX = ".part"
_TOKEN_BYTES = 4  # a part name's random token: 8 hex digits


def part_name(dest: Path) -> Path:
    """A fresh temporary name for `dest`, in its folder (a rename never crosses filesystems)."""
    return dest.parent / f".{dest.name}.{secrets.token_hex(_TOKEN_BYTES)}{SUFFIX}"


def is_part_of(name: str, names: Container[str]) -> bool:
    """Whether the file called `name` is a part file of an output called one of `names`."""
    if not (name.startswith(".") and name.endswith(SUFFIX)):
        return False
    output, _, token = name[1:-len(SUFFIX)].rpartition(".")
    return (output in names and len(token) == 2 * _TOKEN_BYTES
            and all(c in "0123456789abcdef" for c in token))


def create_part(dest: Path, mode: int = 0o666) -> tuple[int, Path]:
    """Create a new, empty part file for `dest`: its descriptor, open for writing, and its path.
    `mode` 0666 lets the umask decide, as for any new file (`tempfile.mkstemp` makes it 0600)."""
    while True:
        part = part_name(dest)
        try:
            return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), part
        except FileExistsError:
            continue


def write_atomic(dest: Path, data: bytes) -> None:
    """Write `data` to `dest` all at once or not at all, making its folder when missing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = create_part(dest)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
