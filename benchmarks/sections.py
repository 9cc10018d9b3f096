"""BENCHMARKS.md has one section per benchmark script, between `<!-- NAME:start -->` and
`<!-- NAME:end -->`: each script rewrites its own and leaves the others as they are."""

from __future__ import annotations

import os
import platform
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


def bars_text(bars: list[tuple[str, bool, str]]) -> str:
    """One sentence for a benchmark's bars: (what, whether it is met, the measured value)."""
    return "Bars: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'} ({value})"
                                for name, ok, value in bars) + "."


def cpu() -> str:
    """The usable cores and the processor's name: "2 cores (AMD EPYC 7B13)"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cores} cores ({name})"
