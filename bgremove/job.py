"""One run of the remove command: check the request, plan the work, pick the reporters, run the
engine with Ctrl-C and SIGTERM handled, write the report. The CLI only parses arguments into a
`Job` and `Settings` and maps the result to an exit code."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgremove.config import Settings
from bgremove.discover import STDIO, Plan, Shard
from bgremove.engine import Summary
from bgremove.errors import UsageError


@dataclass
class Job:
    """What to process and how to report it; the removal settings live in `Settings`."""

    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    files_from: str | None = None
    shard: Shard | None = None
    overwrite: bool = False
    dry_run: bool = False
    json_lines: bool = False
    report: Path | None = None
    quiet: bool = False
    verbose: bool = False

    @property
    def image_on_stdin(self) -> bool:
        return STDIO in self.inputs

    @property
    def image_on_stdout(self) -> bool:
        return self.output == STDIO or (self.output is None and self.inputs == [STDIO]
                                        and self.files_from is None)

    def check(self) -> None:
        """Refuse combinations that cannot work, before anything is read or loaded."""
        if self.quiet and self.verbose:
            raise UsageError("-q/--quiet and -v/--verbose contradict each other: pick one")
        if self.files_from == STDIO and self.image_on_stdin:
            raise UsageError("stdin can carry an image (-) or a list (--files-from -), not both")
        if self.json_lines and self.image_on_stdout:
            raise UsageError("--json writes to stdout, which already carries the image: "
                             "use -o FILE, or --report FILE for a JSON summary")
        if self.dry_run:
            return
        if self.image_on_stdin and sys.stdin.isatty():
            raise UsageError("stdin is a terminal: pipe an image in "
                             "(bgremove - < photo.jpg > cut.webp)")
        if self.image_on_stdout and sys.stdout.isatty():
            raise UsageError("stdout is a terminal: redirect it (> cut.webp) "
                             "or write a file (-o cut.webp)")

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "output": self.output,
            "files_from": self.files_from,
            "shard": str(self.shard) if self.shard else None,
            "overwrite": self.overwrite,
            "dry_run": self.dry_run,
        }


def make_plan(job: Job, settings: Settings) -> Plan:
    from bgremove.discover import plan, read_file_list

    listed = read_file_list(job.files_from) if job.files_from is not None else None
    return plan(job.inputs, job.output, settings.format, listed=listed, shard=job.shard)


def sized_for_this_machine(settings: Settings, images: int) -> Settings:
    """The settings with `workers` and `threads` that were not set filled in from the cores."""
    from dataclasses import replace

    from bgremove.parallel import plan

    workers, threads = plan(settings.workers, settings.threads, images=images,
                            local=settings.backend == "local")
    return replace(settings, workers=workers, threads=threads)


def run(job: Job, settings: Settings) -> Summary:
    """Run the job to the end, or until interrupted. On a second interrupt this returns with
    `summary.abandoned` set while worker threads may still be busy: exit with
    `interrupts.exit_now` then, not a normal exit that would wait for them."""
    from bgremove import interrupts
    from bgremove.backends import open_backend
    from bgremove.engine import Engine
    from bgremove.progress import ConsoleReporter
    from bgremove.report import JsonLinesReporter, PlanListing, Reporters, write_report

    job.check()
    options = settings.removal_options()
    plan = make_plan(job, settings)
    settings = sized_for_this_machine(settings, len(plan.items))

    console = ConsoleReporter(quiet=job.quiet, verbose=job.verbose,
                              credits=settings.backend == "remote")
    if job.json_lines:
        reporter = Reporters(JsonLinesReporter(), console)
    elif job.dry_run:
        reporter = Reporters(PlanListing(), console)
    else:
        reporter = console

    backend = None if job.dry_run else open_backend(settings)
    if backend is not None and settings.backend == "local":
        from bgremove.commands.models import announce

        announce(backend, settings.model, settings.mode.value, quiet=job.quiet, verbose=job.verbose)
    engine = Engine(backend, options, reporter, workers=settings.workers, overwrite=job.overwrite,
                    max_credits=settings.max_credits, dry_run=job.dry_run)
    summary: Summary | None = None
    try:
        with interrupts.calling(engine.interrupt):
            summary = engine.run(plan)
    finally:
        # An abandoned batch may still have threads inside the backend: leave it open.
        if backend is not None and not (summary is not None and summary.abandoned):
            backend.close()
    if job.report is not None:
        write_report(job.report, summary, {**job.describe(), **settings.public()})
    return summary
