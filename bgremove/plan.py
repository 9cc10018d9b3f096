"""Turn what the user named (files, folders, `-`, a list of paths) into work items, each with its
output path, streamed as the walk goes; and pick this runner's share of them (`--shard K/N`).

Nothing here opens a file: whether a file is an image is for the worker that reads it to find out
(it reads the file anyway), so the first image starts at once however big the tree is, and the
planner's memory does not grow with it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bgremove.errors import FileFailed, Option, OptionError
from bgremove.inputs import settle_output
from bgremove.naming import IMAGE_SUFFIXES, STDIO, FolderNames, is_cutout_name, placed
from bgremove.options import OutputFormat


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One input and where its cut-out goes. `None` stands for stdin / stdout.

    `error` is set for an input that cannot be processed at all (it does not exist, a folder that
    cannot be read, a second photo wanting the same output): it fails as it is, with no output.
    It is the error itself (a FileFailed, its path set), so its message keeps its parts and the
    command line can say an option's name as a flag.
    `walked` is set for files found in a folder, which are skipped when they are no image (notes,
    `.DS_Store`), unless their name says they are one: a `.jpg` that is not, like a file named by
    the user that is no image, is a failure. `reason` is set once the batch has compared the
    output with its stamp: why it is made or kept (`stamps.NEW`, `stamps.UP_TO_DATE`, ...).
    """

    source: Path | None
    dest: Path | None
    # compare=False: an error is equal only to itself; two items are alike by their paths.
    error: FileFailed | None = field(default=None, compare=False)
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


class Plan(Protocol):
    """What a batch takes its work from: the work items in order (iterated once per run), and
    how many there are when that is known without a walk (None otherwise)."""

    def __iter__(self) -> Iterator[WorkItem]: ...

    @property
    def known_count(self) -> int | None: ...


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
        out_dir = settle_output(self.inputs, output, listed)
        self.to_file = out_dir is None  # one output file, or stdout: no folder is walked into
        self.out_dir = out_dir if out_dir is not None else Path()

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
            yield WorkItem(source, None, error=FileFailed("no such file", path=source))
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
                    yield WorkItem(path, None, error=_same_output(path, names.owner(path.name)))
                    continue
                yield _claim(WorkItem(path, out_dir / name), claimed)
            elif self._keep(raw):
                yield WorkItem(path, None, error=_no_such(path))

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
                    yield WorkItem(path, None, error=_no_such(path))
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
                yield WorkItem(path, None, error=_same_output(path, names.owner(path.name)))
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
                                   error=FileFailed("cannot read this folder: ",
                                                    f"{exc.strerror or exc}", path=folder))
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
                                   error=_same_output(source, names.owner(entry.name)))
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
                    error=FileFailed(f"same output as {first}: {item.dest} (",
                                     Option("files_from"), " keeps each file's folders in its "
                                     "output's path)", path=item.source))


def _no_such(path: Path) -> FileFailed:
    return FileFailed("no such file or folder", path=path)


def _same_output(path: Path, owner: str) -> FileFailed:
    return FileFailed(f"same output as {owner}", path=path)


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
