"""Machine-readable output: JSON lines as files finish (`--json`), the plan of a dry run, and the
whole run as one JSON document (`--report FILE`). These go to stdout or a file; every message for
people goes to stderr (progress.py)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Protocol

from bgremove import __version__, stamps
from bgremove.atomic import AtomicFile
from bgremove.cli.exits import exit_code_of, in_flags, outcome_error
from bgremove.errors import SetupError, UsageError
from bgremove.files import probe_folder
from bgremove.outcomes import Outcome, Status, Summary


class Reporter(Protocol):
    def update(self, outcome: Outcome, summary: Summary) -> None: ...

    def finish(self, summary: Summary) -> None: ...


class Reporters:
    """Several reporters fed the same events, in order."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

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

    def update(self, outcome: Outcome, summary: Summary) -> None:
        self.stream.write(json.dumps(outcome_dict(outcome), ensure_ascii=False) + "\n")
        self.stream.flush()

    def finish(self, summary: Summary) -> None:
        pass


class PlanListing:
    """`--dry-run` without `--json`: what would be processed or skipped, one line per input on
    stdout (the listing is the data a dry run produces). With `check` (`--check`): only the
    outputs that are missing or stale, each with the reason."""

    def __init__(self, stream: IO[str] | None = None, *, check: bool = False):
        self.stream = stream or sys.stdout
        self.check = check

    def update(self, outcome: Outcome, summary: Summary) -> None:
        if outcome.status is Status.failed:
            return  # reported on stderr as every failure is
        item = outcome.item
        why = f" ({item.reason})" if item.reason else ""
        if outcome.status is Status.would_prune:
            line = f"would prune: {item.output_name} ({item.reason})"
        elif self.check:
            if outcome.status is not Status.would_process:
                return
            if item.reason in (None, stamps.NEW):
                line = f"missing: {item.output_name} (from {item.name})"
            else:
                line = f"stale: {item.output_name} ({item.reason}; from {item.name})"
        elif outcome.status is Status.not_image:
            line = f"would skip: {item.name} (not an image)"
        elif outcome.status is Status.skipped:
            line = f"would skip: {item.name} -> {item.output_name}{why}"
        else:
            line = f"{outcome.status.value}: {item.name} -> {item.output_name}{why}"
        self.stream.write(line + "\n")

    def finish(self, summary: Summary) -> None:
        self.stream.flush()


def counts(summary: Summary) -> dict[str, int]:
    result = {
        "done": summary.count(Status.done),
        "skipped": summary.count(Status.skipped),
        "failed": summary.count(Status.failed),
        "not_processed": summary.count(Status.not_processed),
        "not_images": summary.count(Status.not_image),
    }
    if summary.dry_run:
        result["would_process"] = summary.count(Status.would_process)
    for pruning in (Status.pruned, Status.would_prune):
        if summary.count(pruning):
            result[pruning.name] = summary.count(pruning)
    return result


def reasons(summary: Summary) -> dict[str, dict[str, int]]:
    """Why outputs were made, kept or would be made: {"done": {"input changed": 2, ...}, ...}."""
    return {status.value: why for status in (Status.done, Status.skipped, Status.would_process)
            if (why := summary.why(status))}


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    """An outcome as a JSON object, its error said as the command line says it."""
    return {**outcome.as_dict(), "error": outcome_error(outcome)}


def stop_reason(summary: Summary) -> str | None:
    if summary.interrupted:
        return "interrupted"
    return summary.stopped.reason if summary.stopped is not None else None


class ReportWriter:
    """`--report FILE`: the whole run as one JSON document, written atomically once it ends.

    Outcomes are spooled to a temporary file as they come, not kept in memory, so a run of a
    million files reports every one of them at a constant cost. `options` must hold no secrets.
    """

    def __init__(self, path: Path, options: dict[str, Any]):
        self.path = path
        self.options = options
        # Checked before any work: a report that cannot be written would be lost at the end.
        if path.is_dir():
            raise UsageError(f"--report {path} is a folder: name the report's file")
        # Its folder is made when the report is written, at the end: a run that stops before
        # that leaves no empty folder. The spool waits in the nearest folder that exists.
        try:
            probe_folder(path.parent)
            spool_dir = next(f for f in (path.parent, *path.parent.parents) if f.is_dir())
            self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=spool_dir,
                                                 prefix=f".{path.name}.", suffix=".spool")
        except OSError as exc:
            raise UsageError(f"--report {path}: cannot write there "
                             f"({exc.strerror or exc})") from None

    def update(self, outcome: Outcome, summary: Summary) -> None:
        self._spool.write(json.dumps(outcome_dict(outcome), ensure_ascii=False) + "\n")

    def finish(self, summary: Summary) -> None:
        head = {
            "bgremove": __version__,
            "exit_code": exit_code_of(summary),
            "dry_run": summary.dry_run,
            "counts": counts(summary),
            "reasons": reasons(summary),
            "credits": {"spent": summary.credits_spent, "remaining": summary.credits_remaining},
            "stopped": stop_reason(summary),
            "stopped_message": (in_flags(summary.stopped) if summary.stopped is not None
                                else None),
            "seconds": round(summary.seconds, 3),
            "options": self.options,
        }
        text = json.dumps(head, indent=2, ensure_ascii=False)  # ends with "\n}": opened up below
        try:
            with AtomicFile(self.path, encoding="utf-8") as out:
                out.write(text[:-2] + ',\n  "outcomes": [')
                self._copy(out, lambda o: True)
                out.write('\n  ],\n  "not_images": [')
                self._copy(out, lambda o: o["status"] == Status.not_image.value, key="input")
                out.write("\n  ]\n}\n")
        except OSError as exc:  # the disk filled up, or the folder went, during the run
            raise SetupError(f"--report {self.path}: cannot write it "
                             f"({exc.strerror or exc})") from None
        finally:
            self._spool.close()

    def _copy(self, out: IO[str], keep, key: str | None = None) -> int:
        self._spool.seek(0)
        written = 0
        for line in self._spool:
            outcome = json.loads(line)
            if not keep(outcome):
                continue
            value = outcome if key is None else outcome[key]
            out.write(("," if written else "") + "\n    " + json.dumps(value, ensure_ascii=False))
            written += 1
        return written
