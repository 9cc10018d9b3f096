"""What the user named, before anything is read: the checks that refuse a request that cannot
work (no input, stdin twice, an `-o` that cannot take what is asked), and the paths of a
`--files-from` list, read as they are used."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from bgremove.errors import Option, OptionError, UsageError
from bgremove.naming import IMAGE_SUFFIXES, STDIO, output_is_file, output_suffix
from bgremove.options import OutputFormat


def read_file_list(name: str) -> Iterator[str]:
    """The paths listed in a file (`-`: stdin), one per line, read as they are used. Blank lines
    and lines starting with `#` are ignored, and spaces around a path are trimmed. A list whose
    first entry ends with a NUL byte (`find -print0`) is split on NUL instead, taken exactly as
    it is.
    """
    try:
        stream = sys.stdin.buffer if name == STDIO else open(name, "rb")  # noqa: SIM115
    except OSError as exc:
        raise OptionError(Option("files_from"), f" {name}: {exc.strerror or exc}",
                          path=name) from None
    return _entries(stream, close=name != STDIO)


def _entries(stream, close: bool) -> Iterator[str]:
    try:
        separator: bytes | None = None
        rest = b""
        while True:
            # read1: what has arrived, so a slow producer's paths start work as they come.
            block = stream.read1(1 << 16)
            data = rest + block
            if separator is None:  # settled by the first entry's end
                if b"\0" in data:
                    separator = b"\0"
                elif b"\n" in data or not block:
                    separator = b"\n"
                else:
                    rest = data
                    continue
            if not block:
                entries, rest = [data], b""
            else:
                *entries, rest = data.split(separator)
            for entry in entries:
                if separator == b"\n":
                    entry = entry.strip()
                    if entry.startswith(b"#"):
                        continue
                if entry:
                    # Paths are bytes to the OS: undecodable names survive (surrogateescape).
                    yield os.fsdecode(entry)
            if not block:
                return
    finally:
        if close:
            stream.close()



def settle_output(inputs: Sequence[str], output: str | None,
                  listed: Iterable[str] | None) -> Path | None:
    """The output folder for `inputs` (and `listed` paths), or None when the output is one file
    or stdout; a request that cannot work is refused (UsageError), before anything is read."""
    if not inputs and listed is None:
        raise UsageError("no input given: name files, folders, or - for stdin")
    if list(inputs).count(STDIO) > 1:
        raise UsageError("stdin (-) can be read only once")
    if listed is None and output_is_file(output, inputs):
        _check_single_output(inputs[0], output)
        return None
    if output is None:
        if list(inputs) == [STDIO] and listed is None:
            return None
        raise OptionError("say where the cut-outs go: ", Option("output", "FOLDER"), " (or ",
                          Option("output", "FILE"), " for one input)")
    if output == STDIO:
        what = "an input list" if listed is not None else "more than one input"
        raise OptionError(Option("output", STDIO),
                          f" (stdout) takes exactly one input image, not {what}")
    suffix = output_suffix(output)
    if suffix in IMAGE_SUFFIXES and not Path(output).is_dir():
        if len(inputs) == 1 and listed is None and suffix not in OutputFormat.suffixes():
            raise OptionError(Option("output", output),
                              f": bgremove writes {OutputFormat.names()}, not "
                              f"{suffix[1:].upper()}; name the file .png, .webp or .jpg")
        several = ("the inputs come from a list" if listed is not None else
                   "the input is a folder" if len(inputs) == 1 else
                   "there is more than one input")
        raise OptionError(Option("output", output), f": looks like an image file, but "
                          f"{several}; ", Option("output"), " takes a folder for several "
                          "images")
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise OptionError(Option("output", output), ": exists and is not a folder "
                          "(a single output file needs one input)", path=output)
    return out_dir


def _check_single_output(single: str, output: str | None) -> None:
    if output in (None, STDIO) or single == STDIO:
        return
    source, dest = Path(single), Path(output)
    if source.exists() and dest.exists() and os.path.samefile(source, dest):
        raise OptionError(Option("output", output), " is the input itself: bgremove "
                          "never writes over an input; name another file", path=output)
