"""Turn what the user named (files, folders, `-`, a list of paths) into work items, each with its
output path, and pick this runner's share of them (`--shard K/N`)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bgremove.errors import UsageError
from bgremove.imaging.decode import SNIFF_BYTES, sniff
from bgremove.options import OutputFormat

STDIO = "-"
OUTPUT_SUFFIXES = {".png", ".webp"}


@dataclass(frozen=True)
class WorkItem:
    """One input and where its cut-out goes. `None` stands for stdin / stdout."""

    source: Path | None
    dest: Path | None
    # False for a named input that cannot be processed at all (it does not exist): no output.
    has_output: bool = True

    @property
    def name(self) -> str:
        return str(self.source) if self.source is not None else "<stdin>"

    @property
    def output_name(self) -> str | None:
        if not self.has_output:
            return None
        return str(self.dest) if self.dest is not None else "<stdout>"


@dataclass
class Plan:
    items: list[WorkItem] = field(default_factory=list)
    # Files found in folders that are not images: skipped, and said so in the summary.
    not_images: list[Path] = field(default_factory=list)
    # Named inputs that cannot be processed at all: (what the user wrote, why).
    invalid: list[tuple[str, str]] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return sniff(f.read(SNIFF_BYTES)) is not None
    except OSError:
        return False


def output_is_file(output: str | None, inputs: list[str]) -> bool:
    """`-o x.png` (or `-o -`) with one input file names the output itself, not a folder."""
    if output is None or len(inputs) != 1:
        return False
    if output == STDIO:
        return True
    single = inputs[0]
    return (single == STDIO or not Path(single).is_dir()) and (
        Path(output).suffix.lower() in OUTPUT_SUFFIXES and not Path(output).is_dir()
    )


def _walk(root: Path, skip: Path | None) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        # Hidden folders (.git, .cache) are not photo folders; the output folder, when it sits
        # inside an input folder, must not be fed back in on the next run.
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        found.extend(here / f for f in sorted(files) if not f.startswith("."))
    return found


def read_file_list(name: str) -> list[str]:
    """The paths listed in a file (`-`: stdin), one per line. Blank lines and lines starting with
    `#` are ignored, and spaces around a path are trimmed. A list with NUL bytes in it
    (`find -print0`) is split on NUL instead, and taken exactly as it is."""
    try:
        data = sys.stdin.buffer.read() if name == STDIO else Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"--files-from {name}: {exc.strerror or exc}") from None
    if b"\0" in data:
        entries = data.split(b"\0")
    else:
        entries = [line.strip() for line in data.splitlines()]
        entries = [e for e in entries if not e.startswith(b"#")]
    # Paths are bytes to the OS: undecodable names survive the round trip (surrogateescape).
    return [os.fsdecode(e) for e in entries if e]


def listed_name(raw: str) -> Path:
    """Where a listed path lands under the output folder: the path as written (`assets/a/x.jpg`
    -> `OUT/assets/a/x.webp`), as `rsync --files-from` and `tar -T` keep it, so outputs never
    collide and do not depend on which other files are in the list. An absolute path, or one
    that climbs out with `..`, is taken relative to the current folder when it is inside it, and
    without its leading `/` otherwise (as tar does)."""
    path = Path(raw)
    if not path.is_absolute() and ".." not in path.parts:
        return path
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd())
    except ValueError:
        return absolute.relative_to(absolute.anchor)


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
            raise UsageError(f"--shard {text!r}: expected K/N with 1 <= K <= N, such as 2/4")
        return cls(int(match[1]), int(match[2]))

    def holds(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def plan(inputs: Sequence[str], output: str | None, output_format: OutputFormat, *,
         listed: Sequence[str] | None = None, shard: Shard | None = None) -> Plan:
    """Resolve inputs to work items. Folders are walked recursively and mirrored under `output`.

    `listed` are the paths read by `--files-from` (None: no list given); each lands under
    `output` at its path as written (see `listed_name`). With `shard`, only that part of the
    set is kept; output names are chosen over the whole set first, so they do not depend on
    the shard.
    """
    inputs = list(inputs)
    if not inputs and listed is None:
        raise UsageError("no input given: name files, folders, or - for stdin")
    if inputs.count(STDIO) > 1:
        raise UsageError("stdin (-) can be read only once")
    result = Plan()
    suffix = "." + output_format.value

    if listed is None and output_is_file(output, inputs):
        source = None if inputs[0] == STDIO else Path(inputs[0])
        dest = None if output == STDIO else Path(output)
        if source is not None and not source.exists():
            result.invalid.append((inputs[0], "no such file"))
        elif shard is None or shard.holds(source.stem if source else "stdin"):
            result.items.append(WorkItem(source, dest))
        return result
    if output is None:
        if inputs == [STDIO] and listed is None:
            result.items.append(WorkItem(None, None))
            return result
        raise UsageError("say where the cut-outs go: -o FOLDER (or -o FILE for one input)")
    if output == STDIO:
        what = "an input list" if listed is not None else "more than one input"
        raise UsageError(f"-o - (stdout) takes exactly one input image, not {what}")

    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {output}: exists and is not a folder "
                         "(a single output file needs one input)")
    skip = out_dir.resolve()
    # (source, dest relative to out_dir without suffix) in input order; collisions resolved below.
    pairs: list[tuple[Path | None, Path]] = []
    seen: set[Path] = set()
    named = [(raw, False) for raw in inputs] + [(raw, True) for raw in listed or ()]
    for raw, from_list in named:
        if raw == STDIO and not from_list:
            pairs.append((None, Path("stdin")))
            continue
        path = Path(raw)
        base = listed_name(raw) if from_list else None
        if path.is_dir():
            for file in _walk(path, skip):
                if file.resolve() in seen:
                    continue
                seen.add(file.resolve())
                if is_image_file(file):
                    rel = file.relative_to(path)
                    pairs.append((file, (base / rel if base else rel).with_suffix("")))
                else:
                    result.not_images.append(file)
        elif path.exists():
            if path.resolve() not in seen:
                seen.add(path.resolve())
                pairs.append((path, base.with_suffix("") if base else Path(path.stem)))
        elif shard is None or shard.holds(raw):
            result.invalid.append((raw, "no such file or folder"))

    by_dest: dict[Path, list[Path | None]] = defaultdict(list)
    for source, rel in pairs:
        by_dest[rel].append(source)
    taken: dict[Path, Path | None] = {}
    for source, rel in pairs:
        if len(by_dest[rel]) > 1 and source is not None:
            # a.jpg and a.png would both become a.webp: keep both, named after their source.
            dest = out_dir / rel.parent / (source.name + suffix)
        else:
            dest = out_dir / (str(rel) + suffix)
        if shard is not None and not shard.holds(rel.as_posix()):
            continue
        if dest in taken:
            # x/a.jpg and y/a.jpg named side by side: one output name for two photos.
            result.invalid.append((str(source), f"same output as {taken[dest]}: {dest} "
                                   "(pass their folders instead, or --files-from)"))
            continue
        taken[dest] = source
        result.items.append(WorkItem(source, dest))
    if shard is not None:
        result.not_images = [p for p in result.not_images if shard.holds(p.as_posix())]
    return result
