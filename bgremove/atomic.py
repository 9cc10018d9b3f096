"""Atomic writes: a file is written under a temporary name next to its destination, then renamed
over it, so a reader never sees half a file and a run killed mid-write leaves a part file
(`.NAME.XXXXXXXX.part`), never a broken output.

Every writer of an output, a report or a downloaded model commits through `AtomicFile` (or
`write_atomic`, its one-call form), so a part file has one shape, `is_part_of` recognises it
wherever leftovers are cleaned up, and the commit is written once. Permissions come from
`os.open`'s mode, which the umask narrows as for any new file: nothing here changes the umask,
which is process-wide and would race other threads' writes.

Durability: a rename is atomic for a running system, not across a power cut. Without an fsync,
the filesystem may write the new name before the data (ext4 does for a new file; XFS too), so
after a crash an output can exist truncated or empty, and a PNG or JPEG keeps its stamp in its
first bytes: a re-run would keep it as up to date. So the part file's data is fsynced before the
rename, and the folder after it (the rename itself, so a run that reported an output done has
it on disk). Measured over 1,000 outputs on the reference machine (ext4, loaded): 5 to 6 ms an
output for the file's fsync, 10 to 11 ms with the folder's, against about 555 ms of a thread's
work per image (under 2%, and a thread waiting on the disk lets the others compute;
BENCHMARKS.md, "Durability"). `DURABLE` turns both off for callers that do not need them.
stamps.py also refuses an output whose end is missing, whatever left it so.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Container
from pathlib import Path
from types import TracebackType
from typing import IO, Any

# fsync every committed file and its folder (see above; benchmarks/durability.py measures it).
DURABLE = True

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


def sync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable: fsync the folder itself. Where a folder cannot be
    opened or synced (Windows, some network filesystems) there is nothing more to do."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # EINVAL: this filesystem does not sync folders (their renames are synchronous)
    finally:
        os.close(fd)


class AtomicFile:
    """A new file for `dest`, written under a part name: `with AtomicFile(dest) as f: ...`
    writes through `f` (bytes, or text in `encoding`) and, when the block ends without an
    exception, commits it: fsync (with `durable`), rename over `dest`, fsync of the folder. An
    exception discards it, and `dest` is as it was. Made (the folder too, when missing) when the
    object is: an OSError then is about the folder, not the writing."""

    def __init__(self, dest: Path, *, encoding: str | None = None, durable: bool | None = None,
                 mode: int = 0o666):
        self.dest = dest
        self.durable = DURABLE if durable is None else durable
        self.committed = False
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self.part = create_part(dest, mode)
        try:
            self.file: IO[Any] = open(fd, "w" if encoding else "wb", encoding=encoding)
        except BaseException:
            os.close(fd)
            self.part.unlink(missing_ok=True)
            raise

    def __enter__(self) -> IO[Any]:
        return self.file

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def commit(self) -> None:
        """Make the written data `dest`, durably with `durable`; on failure, discard it."""
        try:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())  # the data reaches the disk before the name does
            self.file.close()
            os.replace(self.part, self.dest)
            self.committed = True
        except BaseException:
            self.discard()
            raise
        if self.durable:
            sync_folder(self.dest.parent)

    def discard(self) -> None:
        """Remove the part file (nothing to do once committed)."""
        if self.committed:
            return
        try:
            self.file.close()
        except OSError:
            pass  # a full disk refusing the last buffered bytes: they are not wanted
        finally:
            self.part.unlink(missing_ok=True)


def write_atomic(dest: Path, data: bytes, *, durable: bool | None = None) -> None:
    """Write `data` to `dest` all at once or not at all, making its folder when missing."""
    with AtomicFile(dest, durable=durable) as f:
        f.write(data)
