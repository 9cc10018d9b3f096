"""Turn what the user named (files, folders, `-`, a list of paths) into work items, each with its
output path, streamed as the walk goes; and pick this runner's share of them (`--shard K/N`).

Nothing here opens a file: whether a file is an image is for the worker that reads it to find out
(it reads the file anyway), so the first image starts at once however big the tree is, and the
planner's memory does not grow with it. Output names are settled folder by folder: two files can
only want the same output name (`a.jpg`, `a.png`) when they share a folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bgremove.errors import Option, OptionError, UsageError
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


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One input and where its cut-out goes. `None` stands for stdin / stdout.

    `error` is set for an input that cannot be processed at all (it does not exist, a folder that
    cannot be read, a second photo wanting the same output): it fails as it is, with no output.
    `walked` is set for files found in a folder, which are skipped when they are no image (notes,
    `.DS_Store`), unless their name says they are one: a `.jpg` that is not, like a file named by
    the user that is no image, is a failure. `reason` is set once the batch has compared the
    output with its stamp: why it is made or kept (`stamps.NEW`, `stamps.UP_TO_DATE`, ...).
    """

    source: Path | None
    dest: Path | None
    error: str | None = None
    walked: bool = False
    reason: str | None = None

    @property
    def name(self) -> str:
        return str(self.source) if self.source is not None else "<stdin>"

    @property
    def skip_if_not_image(self) -> bool:
        return (self.walked and self.source is not None
                and self.source.suffix.lower() not in IMAGE_SUFFIXES)

    @property
    def output_name(self) -> str | None:
        if self.error is not None:
            return None
        return str(self.dest) if self.dest is not None else "<stdout>"


@dataclass(frozen=True)
class Shard:
    """The K-th of N parts of the input set, K counting from 1 (`--shard K/N`).

    A file's part comes from a hash of its path relative to what was named (the same relative
    path its output gets), not from its position in a sorted list. So it depends on nothing but
    the file itself: every runner of a CI matrix puts it in the same part even when a runner
    sees a few more or fewer files (a checkout racing a commit, a `find -newer` list), and it
    keeps its part from one run to the next, so cached or resumed outputs stay with their
    runner. Positions would balance the parts to one file, but adding one file would move
    every file after it to another part. The cost of hashing: parts are only about equal.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise OptionError(Option("shard"),
                              f" {text!r}: expected K/N with 1 <= K <= N, such as 2/4")
        return cls(int(match[1]), int(match[2]))

    def holds(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


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


class Planner:
    """The work items of one run, in order: named inputs first, then listed ones (`listed`: the
    paths of `--files-from`, consumed as they are needed). Bad requests are refused here, when the
    planner is made, before anything is read or loaded; iterating walks the folders.

    With `shard`, only that part of the set is yielded; output names do not depend on the shard.
    """

    def __init__(self, inputs: Sequence[str], output: str | None, output_format: OutputFormat,
                 *, listed: Iterable[str] | None = None, shard: Shard | None = None):
        self.inputs = list(inputs)
        self.output = output
        self.suffix = output_format.suffix
        self.listed = listed
        self.shard = shard
        if not self.inputs and listed is None:
            raise UsageError("no input given: name files, folders, or - for stdin")
        if self.inputs.count(STDIO) > 1:
            raise UsageError("stdin (-) can be read only once")
        self.to_file = listed is None and output_is_file(output, self.inputs)
        if self.to_file:
            self._check_single_output()
            return
        if output is None:
            if self.inputs == [STDIO] and listed is None:
                self.to_file = True
                return
            raise OptionError("say where the cut-outs go: ", Option("output", "FOLDER"), " (or ",
                              Option("output", "FILE"), " for one input)")
        if output == STDIO:
            what = "an input list" if listed is not None else "more than one input"
            raise OptionError(Option("output", STDIO),
                              f" (stdout) takes exactly one input image, not {what}")
        suffix = output_suffix(output)
        if suffix in IMAGE_SUFFIXES and not Path(output).is_dir():
            if len(self.inputs) == 1 and listed is None and suffix not in OutputFormat.suffixes():
                raise OptionError(Option("output", output),
                                  f": bgremove writes {OutputFormat.names()}, not "
                                  f"{suffix[1:].upper()}; name the file .png, .webp or .jpg")
            several = ("the inputs come from a list" if listed is not None else
                       "the input is a folder" if len(self.inputs) == 1 else
                       "there is more than one input")
            raise OptionError(Option("output", output), f": looks like an image file, but "
                              f"{several}; ", Option("output"), " takes a folder for several "
                              "images")
        self.out_dir = Path(output)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OptionError(Option("output", output), ": exists and is not a folder "
                              "(a single output file needs one input)", path=output)

    def _check_single_output(self) -> None:
        single = self.inputs[0]
        if self.output in (None, STDIO) or single == STDIO:
            return
        source, dest = Path(single), Path(self.output)
        if source.exists() and dest.exists() and os.path.samefile(source, dest):
            raise OptionError(Option("output", self.output), " is the input itself: bgremove "
                              "never writes over an input; name another file", path=self.output)

    @property
    def known_count(self) -> int | None:
        """How many inputs there are, when that is known without a walk (files named on the
        command line, or stdin), else None."""
        if self.listed is not None or any(
                raw != STDIO and Path(raw).is_dir() for raw in self.inputs):
            return None
        return len(self.inputs)

    def __iter__(self) -> Iterator[WorkItem]:
        if self.to_file:
            yield from self._single_item()
            return
        yield from self._named()
        if self.listed is not None:
            yield from self._listed()

    def _keep(self, key: str) -> bool:
        return self.shard is None or self.shard.holds(key)

    def _single_item(self) -> Iterator[WorkItem]:
        single = self.inputs[0]
        source = None if single == STDIO else Path(single)
        dest = None if self.output in (None, STDIO) else Path(self.output)
        if not self._keep(source.stem if source else "stdin"):
            return
        if source is not None and not source.exists():
            yield WorkItem(source, None, error="no such file")
        else:
            yield WorkItem(source, dest)

    def _named(self) -> Iterator[WorkItem]:
        out_dir = self.out_dir
        files = [Path(raw) for raw in self.inputs if raw != STDIO and Path(raw).is_file()]
        named_files = {_identity(p) for p in files}
        # Files named side by side are named among themselves, as a folder's files are.
        names_by_folder: dict[Path, FolderNames] = {}
        # Outputs given out so far, when there are several inputs (x/ and y/ both holding a.jpg
        # land on one a.webp): the second photo fails rather than overwrite the first.
        claimed: dict[str, str] | None = {} if len(self.inputs) > 1 else None
        roots: list[tuple[int, int]] = []  # folders walked so far: not walked twice
        done: set[tuple[int, int]] = set()  # files planned so far: a file named twice runs once
        for raw in self.inputs:
            if raw == STDIO:
                if self._keep("stdin"):
                    yield WorkItem(None, out_dir / ("stdin" + self.suffix))
                continue
            path = Path(raw)
            if path.is_dir():
                if _identity(path) in roots or _inside_any(path, roots):
                    continue
                for item in self._walk(path, out_dir, Path(), skip=[*roots, *_existing(out_dir)],
                                       skip_files=named_files):
                    yield _claim(item, claimed)
                roots.append(_identity(path))
            elif path.exists():
                identity = _identity(path)
                if identity in done or _inside_any(path.parent, roots):
                    continue  # named before, or found by an earlier folder's walk already
                done.add(identity)
                names = names_by_folder.get(path.parent)
                if names is None:
                    siblings = {_identity(p): p.name for p in files if p.parent == path.parent}
                    names = names_by_folder[path.parent] = FolderNames(
                        siblings.values(), self.suffix, _same_folder(out_dir, path.parent))
                name, key = names.output(path.name)
                if not self._keep(key):
                    continue
                if name is None:  # both its output names are taken by other files here
                    yield WorkItem(path, None, error=f"same output as {names.owner(path.name)}")
                    continue
                yield _claim(WorkItem(path, out_dir / name), claimed)
            elif self._keep(raw):
                yield WorkItem(path, None, error="no such file or folder")

    def _listed(self) -> Iterator[WorkItem]:
        """Listed paths land under -o at their path as written; a file is named among the files
        beside it on disk (not among the other listed ones), so its output does not depend on
        what else is in the list."""
        out_dir = self.out_dir
        folders: OrderedDict[Path, FolderNames] = OrderedDict()  # a few recent folders' names
        for raw, base in placed(self.listed or ()):
            path = Path(raw)
            if path.is_dir():
                yield from self._walk(path, out_dir / base, base,
                                      skip=_existing(out_dir), skip_files=set())
                continue
            if not path.exists():
                if self._keep(raw):
                    yield WorkItem(path, None, error="no such file or folder")
                continue
            if is_cutout_name(path.name):
                continue  # bgremove's own output (`find shop -type f` lists them too)
            dest_dir = out_dir / base.parent
            # `c.png`, `./c.png` and `$PWD/c.png` are one folder's file.
            folder = Path(os.path.abspath(path.parent))
            names = folders.get(folder)
            if names is None:
                names = FolderNames(_file_names(path.parent), self.suffix,
                                    _same_folder(dest_dir, path.parent))
                folders[folder] = names
                if len(folders) > 64:
                    folders.popitem(last=False)
            if names.named_before(path.name):
                continue  # listed twice
            name, key = names.output(path.name)
            if not self._keep((base.parent / key).as_posix()):
                continue
            if name is None:  # both its output names are taken by other files there
                yield WorkItem(path, None, error=f"same output as {names.owner(path.name)}")
            else:
                yield WorkItem(path, dest_dir / name)

    def _walk(self, root: Path, out_root: Path, rel_root: Path, *, skip: list[tuple[int, int]],
              skip_files: set[tuple[int, int]]) -> Iterator[WorkItem]:
        """Every file under `root`, folder by folder, in name order. Hidden files and folders
        (.git, .cache) are not walked, nor are `skip` folders (the output folder inside an input
        folder, folders walked already) or bgremove's own in-place outputs."""
        stack = [(root, Path())]
        while stack:
            folder, rel = stack.pop()
            try:
                with os.scandir(folder) as scan:
                    entries = sorted((e for e in scan if not e.name.startswith(".")),
                                     key=lambda e: e.name)
            except OSError as exc:
                if self._keep((rel_root / rel).as_posix()):
                    yield WorkItem(folder, None, walked=True,
                                   error=f"cannot read this folder: {exc.strerror or exc}")
                continue
            files, subfolders = [], []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry)  # a link to a folder is not followed
                    elif entry.is_file() and not is_cutout_name(entry.name):
                        files.append(entry)
                    elif entry.is_symlink() and not os.path.exists(entry.path):
                        files.append(entry)  # a broken link fails, with its reason
                except OSError:
                    files.append(entry)  # the worker will say what is wrong with it
            dest_dir = out_root / rel
            names = FolderNames((e.name for e in files), self.suffix,
                                _same_folder(dest_dir, folder))
            for entry in files:
                if skip_files and _entry_identity(entry) in skip_files:
                    continue
                name, key = names.output(entry.name)
                if not self._keep((rel_root / rel / key).as_posix()):
                    continue
                source = folder / entry.name
                if name is None:
                    yield WorkItem(source, None, walked=True,
                                   error=f"same output as {names.owner(entry.name)}")
                else:
                    yield WorkItem(source, dest_dir / name, walked=True)
            # The output folder is made when its first output is written, maybe during the walk.
            output_folder = _existing(self.out_dir) if subfolders else []
            for entry in reversed(subfolders):
                identity = _entry_identity(entry)
                if identity not in skip and identity not in output_folder:
                    stack.append((folder / entry.name, rel / entry.name))


def _claim(item: WorkItem, claimed: dict[str, str] | None) -> WorkItem:
    """The item, or a failure if another input of this run has its output already."""
    if claimed is None or item.dest is None or item.source is None:
        return item
    first = claimed.setdefault(str(item.dest), str(item.source))
    if first == str(item.source):
        return item
    return WorkItem(item.source, None, walked=item.walked,
                    error=f"same output as {first}: {item.dest} (--files-from keeps each "
                    "file's folders in its output's path)")


def _identity(path: Path) -> tuple[int, int]:
    """(device, inode): the same folder whatever path names it; (-1, -1) if it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


def _existing(folder: Path) -> list[tuple[int, int]]:
    identity = _identity(folder)
    return [identity] if identity != (-1, -1) else []


def _entry_identity(entry: os.DirEntry) -> tuple[int, int]:
    try:
        st = entry.stat(follow_symlinks=True)
    except OSError:
        return (-2, -2)  # matches nothing, not even a folder that does not exist
    return (st.st_dev, st.st_ino)


def _inside_any(path: Path, roots: list[tuple[int, int]]) -> bool:
    if not roots:
        return False
    for folder in (path, *path.resolve().parents):
        if _identity(folder) in roots:
            return True
    return False


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _file_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as scan:
            return [e.name for e in scan if not e.name.startswith(".")]
    except OSError:
        return []
