"""BENCHMARKS.md has one section per benchmark script, between `<!-- NAME:start -->` and
`<!-- NAME:end -->`: each script rewrites its own and leaves the others as they are."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no {name} section ({start} ... {end})")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    path.write_text(f"{before}{start}\n{body.strip()}\n{end}{after}")
