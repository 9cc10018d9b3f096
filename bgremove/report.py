"""Machine-readable output: JSON lines as files finish (`--json`), the plan of a dry run, and the
whole run's summary as one JSON document (`--report FILE`). These go to stdout or a file; every
message for people goes to stderr (progress.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

from bgremove import __version__
from bgremove.engine import Outcome, Reporter, Summary, write_atomically


class Reporters:
    """Several reporters fed the same events, in order."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def start(self, total: int) -> None:
        for reporter in self.reporters:
            reporter.start(total)

    def update(self, outcome: Outcome, summary: Summary) -> None:
        for reporter in self.reporters:
            reporter.update(outcome, summary)

    def finish(self, summary: Summary) -> None:
        for reporter in self.reporters:
            reporter.finish(summary)


class JsonLinesReporter:
    """`--json`: one JSON object per input on stdout, written and flushed as soon as it is
    finished, so a consumer can act on each file while the batch goes on."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def start(self, total: int) -> None:
        pass

    def update(self, outcome: Outcome, summary: Summary) -> None:
        self.stream.write(json.dumps(outcome.as_dict(), ensure_ascii=False) + "\n")
        self.stream.flush()

    def finish(self, summary: Summary) -> None:
        pass


class PlanListing:
    """`--dry-run` without `--json`: what would be processed or skipped, one line per input on
    stdout (the listing is the data a dry run produces)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def start(self, total: int) -> None:
        pass

    def update(self, outcome: Outcome, summary: Summary) -> None:
        if outcome.status == "failed":
            return  # reported on stderr as every failure is
        line = f"{outcome.item.name} -> {outcome.item.output_name}"
        if outcome.status == "skipped":
            line = f"would skip: {line} ({outcome.error})"
        else:
            line = f"{outcome.status}: {line}"
        self.stream.write(line + "\n")

    def finish(self, summary: Summary) -> None:
        self.stream.flush()


def counts(summary: Summary) -> dict[str, int]:
    result = {
        "done": summary.count("done"),
        "skipped": summary.count("skipped"),
        "failed": summary.count("failed"),
        "not_processed": summary.count("not processed"),
        "not_images": len(summary.not_images),
    }
    if summary.dry_run:
        result["would_process"] = summary.count("would process")
    return result


def stop_reason(summary: Summary) -> str | None:
    if summary.interrupted:
        return "interrupted"
    return summary.stopped.reason if summary.stopped is not None else None


def report_document(summary: Summary, options: dict[str, Any]) -> dict[str, Any]:
    """The whole run as one JSON-able document. `options` must hold no secrets."""
    return {
        "bgremove": __version__,
        "exit_code": summary.exit_code,
        "dry_run": summary.dry_run,
        "counts": counts(summary),
        "credits": {"spent": summary.credits_spent, "remaining": summary.credits_remaining},
        "stopped": stop_reason(summary),
        "stopped_message": str(summary.stopped) if summary.stopped is not None else None,
        "seconds": round(summary.seconds, 3),
        "options": options,
        "outcomes": [o.as_dict() for o in summary.outcomes],
        "not_images": [str(p) for p in summary.not_images],
    }


def write_report(path: Path, summary: Summary, options: dict[str, Any]) -> None:
    """Write the report atomically: a CI step reading it never sees half a document."""
    text = json.dumps(report_document(summary, options), indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, text.encode("utf-8"))
