"""Output names: what a file's cut-out is called (`photo.webp`, `photo.jpg.webp` beside a
`photo.png`, `photo.cutout.webp` in place), whether `-o` names a file or a folder, and where a
listed path lands under the output folder. Output names are settled folder by folder: two files
can only want the same output name (`a.jpg`, `a.png`) when they share a folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from bgremove.options import OutputFormat

STDIO = "-"
# In-place outputs (`-o` is the input folder) are named `photo.cutout.webp`, and a walk never takes
# a file named so for an input: one run's outputs are not the next run's inputs.
CUTOUT = ".cutout"
# Names that say "image". Two files of one folder whose names differ only in one of these
# extensions would want one output name, so both are named after their whole name instead.
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".avif", ".heic", ".heif", ".jp2", ".j2k", ".jpf", ".jpx", ".ppm", ".pgm", ".pbm", ".pnm",
    ".qoi", ".mpo",
})


def output_suffix(output: str | None) -> str:
    return Path(output).suffix.lower() if output and output != STDIO else ""


def output_is_file(output: str | None, inputs: Sequence[str]) -> bool:
    """`-o x.png` (or `-o -`) with one input file names the output itself, not a folder."""
    if output is None or len(inputs) != 1:
        return False
    if output == STDIO:
        return True
    single = inputs[0]
    return (single == STDIO or not Path(single).is_dir()) and (
        output_suffix(output) in OutputFormat.suffixes() and not Path(output).is_dir()
    )


def placed(listed: Iterable[str]) -> Iterator[tuple[str, Path]]:
    """Each listed path, with where it lands under the output folder. A path under the current
    folder lands at its path from there (`assets/a/x.jpg` or `$PWD/assets/a/x.jpg` ->
    `OUT/assets/a/x.webp`), as `rsync --files-from` and `tar -T` keep it, whatever else is
    listed. Any other lands at its path from the deepest folder that all listed paths share, as a
    folder named on the command line is mirrored from inside (`find /data/photos` ->
    `OUT/sub/x.webp`). `..` never climbs out of the output folder.

    Paths are placed as they are read until the first one outside the current folder: that one
    waits for the end of the list (kept in memory), as the folder they share depends on all."""
    cwd = os.getcwd()
    shared: str | None = None
    entries = iter(listed)
    for raw in entries:
        absolute = os.path.abspath(raw)
        shared = _shared_folder(shared, absolute)
        if _is_under(absolute, cwd):
            yield raw, Path(absolute).relative_to(cwd)
            continue
        rest = list(entries)
        for other in rest:
            shared = _shared_folder(shared, os.path.abspath(other))
        for each in (raw, *rest):
            path = Path(os.path.abspath(each))
            base = next((b for b in (cwd, shared) if b and _is_under(str(path), b)),
                        path.anchor)  # paths on two drives share no folder
            yield each, path.relative_to(base)
        return


def _shared_folder(shared: str | None, absolute: str) -> str:
    """The deepest folder holding `shared` and the listed path `absolute` (a folder holds itself;
    "" when there is none, as for two drives)."""
    folder = absolute if os.path.isdir(absolute) else os.path.dirname(absolute)
    if shared is None:
        return folder
    try:
        return os.path.commonpath([shared, folder]) if shared else ""
    except ValueError:
        return ""


def _is_under(absolute: str, folder: str) -> bool:
    return absolute == folder or absolute.startswith(folder.rstrip(os.sep) + os.sep)


def is_cutout_name(name: str) -> bool:
    """Whether a file name is one bgremove gives its in-place outputs (`x.cutout.webp`)."""
    stem, suffix = os.path.splitext(name)
    return suffix.lower() in OutputFormat.suffixes() and stem.lower().endswith(CUTOUT)


class FolderNames:
    """The output names of one folder's files: `photo.webp` for `photo.jpg`, or, when another
    image of the folder has the same stem (`photo.png`), `photo.jpg.webp` and `photo.png.webp`;
    with `.cutout` before the suffix when the outputs go into the folder itself."""

    def __init__(self, names: Iterable[str], suffix: str, in_place: bool):
        self.suffix = (CUTOUT if in_place else "") + suffix
        stems: dict[str, int] = {}
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_SUFFIXES:
                key = stem.casefold()
                stems[key] = stems.get(key, 0) + 1
        self._shared = {stem for stem, n in stems.items() if n > 1}
        self._taken: dict[str, str] = {}  # output name (casefolded) -> the file that has it
        self._named: set[str] = set()  # the files given an output so far

    def named_before(self, name: str) -> bool:
        return name in self._named

    def output(self, name: str) -> tuple[str | None, str]:
        """(the output's file name, or None when another file of the folder has it; the name
        without suffix, for --shard)."""
        stem, ext = os.path.splitext(name)
        image_named = ext.lower() in IMAGE_SUFFIXES
        base = stem if image_named and stem.casefold() not in self._shared else name
        for candidate in (base, name):
            key = (candidate + self.suffix).casefold()
            if key not in self._taken:
                self._taken[key] = name
                self._named.add(name)
                return candidate + self.suffix, candidate
        return None, name

    def owner(self, name: str) -> str:
        return self._taken.get((name + self.suffix).casefold(), "?")

