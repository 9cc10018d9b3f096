"""The batch's file I/O: reading an input, checking its header for a dry run, writing its output
atomically, and proving the output folder can be written before any work is done."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from bgremove.atomic import create_part, write_atomic
from bgremove.errors import FileFailed, SetupError
from bgremove.plan import WorkItem


def check_writable(folder: Path) -> None:
    """Prove a file can be written in the output folder before any work is done: an output that
    cannot be written fails every file, so it stops the batch at once."""
    try:
        probe_folder(folder)
    except OSError as exc:
        raise SetupError(f"cannot write to the output folder {folder}: "
                         f"{exc.strerror or exc}") from None


def probe_folder(folder: Path) -> None:
    """Write and remove a file in `folder` (OSError if that cannot be done). The folders made to
    prove it are removed again: outputs make them when the first is written (write_atomically),
    so a run that writes nothing leaves nothing."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = create_part(folder / "bgremove-probe", mode=0o600)
        os.close(fd)
        probe.unlink()
    finally:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:
                break  # not empty: something else writes there now


# Write errors that every other file would meet too: the batch stops instead of failing them all.
_FATAL_WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def read_input(item: WorkItem) -> tuple[bytes, os.stat_result | None]:
    """The input's bytes, and its `stat` as it was opened (None for stdin), for its stamp."""
    if item.source is None:
        return sys.stdin.buffer.read(), None
    try:
        with open(item.source, "rb") as f:
            stat = os.fstat(f.fileno())
            return f.read(), stat
    except IsADirectoryError:
        raise FileFailed("is a folder") from None
    except OSError as exc:
        raise FileFailed(f"cannot read: {exc.strerror or exc}") from None


def check_header(item: WorkItem, max_size: int | None, *, remote: bool = False) -> None:
    """Raise what processing the input would raise from its header alone (nothing is decoded):
    the input cannot be read, is no image, is empty or too large; `remote`: too large or of a
    type for the API, as the remote session would refuse it before sending. Stdin is not read."""
    if item.source is None:
        return
    from bgremove.imaging.decode import check_header as check_image_header

    try:
        file = open(item.source, "rb")  # noqa: SIM115
    except IsADirectoryError:
        raise FileFailed("is a folder") from None
    except OSError as exc:
        raise FileFailed(f"cannot read: {exc.strerror or exc}") from None
    with file:
        if remote:
            from bgremove.backends.remote import check_file

            check_file(file, os.fstat(file.fileno()).st_size, max_size)
        else:
            check_image_header(file, max_size=max_size)


def write_output(item: WorkItem, data: bytes) -> None:
    if item.dest is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        write_atomic(item.dest, data)
    except OSError as exc:
        where = f"cannot write {item.dest}: {exc.strerror or exc}"
        if exc.errno in _FATAL_WRITE_ERRORS:
            raise SetupError(where) from None
        raise FileFailed(where) from None
