"""Turn what the user named (files, folders, `-`) into work items, each with its output path."""

from __future__ import annotations

import os
from collections import defaultdict
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

    @property
    def name(self) -> str:
        return str(self.source) if self.source is not None else "<stdin>"

    @property
    def output_name(self) -> str:
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
            d for d in dirs if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        found.extend(here / f for f in sorted(files) if not f.startswith("."))
    return found


def plan(inputs: list[str], output: str | None, output_format: OutputFormat) -> Plan:
    """Resolve inputs to work items. Folders are walked recursively and mirrored under `output`."""
    if not inputs:
        raise UsageError("no input given: name files, folders, or - for stdin")
    if inputs.count(STDIO) > 1:
        raise UsageError("stdin (-) can be read only once")
    result = Plan()
    suffix = "." + output_format.value

    if output_is_file(output, inputs):
        source = None if inputs[0] == STDIO else Path(inputs[0])
        dest = None if output == STDIO else Path(output)
        if source is not None and not source.exists():
            result.invalid.append((inputs[0], "no such file"))
        else:
            result.items.append(WorkItem(source, dest))
        return result
    if output is None:
        if inputs == [STDIO]:
            result.items.append(WorkItem(None, None))
            return result
        raise UsageError("say where the cut-outs go: -o FOLDER (or -o FILE for one input)")
    if output == STDIO:
        raise UsageError("-o - (stdout) takes exactly one input image")

    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {output}: exists and is not a folder (a single output file needs one input)")
    skip = out_dir.resolve()
    # (source, dest relative to out_dir without suffix) in input order; collisions resolved below.
    pairs: list[tuple[Path | None, Path]] = []
    seen: set[Path] = set()
    for raw in inputs:
        if raw == STDIO:
            pairs.append((None, Path("stdin")))
            continue
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path, skip):
                if file.resolve() in seen:
                    continue
                seen.add(file.resolve())
                if is_image_file(file):
                    pairs.append((file, file.relative_to(path).with_suffix("")))
                else:
                    result.not_images.append(file)
        elif path.exists():
            if path.resolve() not in seen:
                seen.add(path.resolve())
                pairs.append((path, Path(path.stem)))
        else:
            result.invalid.append((raw, "no such file or folder"))

    by_dest: dict[Path, list[Path | None]] = defaultdict(list)
    for source, rel in pairs:
        by_dest[rel].append(source)
    for source, rel in pairs:
        if len(by_dest[rel]) > 1 and source is not None:
            # a.jpg and a.png would both become a.webp: keep both, named after their source.
            dest = out_dir / rel.parent / (source.name + suffix)
        else:
            dest = out_dir / (str(rel) + suffix)
        result.items.append(WorkItem(source, dest))
    return result
