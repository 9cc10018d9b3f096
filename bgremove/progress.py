"""What the user sees on stderr: a live progress bar on a terminal, plain lines elsewhere, and a
summary at the end. stdout is left for data (images, JSON lines)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bgremove.engine import Outcome, Summary


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} img/s" if speed else "-- img/s", style="progress.data.speed")


def stderr_console() -> Console:
    # Rich honours NO_COLOR (no colour, bold stays), and turns colour off when stderr is not a
    # terminal, unless FORCE_COLOR or TTY_COMPATIBLE=1 asks for it (CI logs that render colour).
    return Console(stderr=True, highlight=False)


def animates(console: Console) -> bool:
    """Whether a live progress bar may redraw itself on this console. Rich would animate when
    FORCE_COLOR makes a pipe look like a terminal; a CI log would then fill with redraws. Colour
    may be forced; animation needs a real terminal (and not TERM=dumb)."""
    isatty = getattr(console.file, "isatty", None)
    try:
        real_terminal = bool(isatty and isatty())
    except ValueError:  # closed stream
        real_terminal = False
    return real_terminal and console.is_interactive


class ConsoleReporter:
    """Progress and summary on stderr. `verbose` lists every file; `quiet` only failures."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False,
                 verbose: bool = False, credits: bool = False):
        self.console = console or stderr_console()
        self.quiet = quiet
        self.verbose = verbose
        self.credits = credits
        self.progress: Progress | None = None
        self.task = None

    def start(self, total: int) -> None:
        if self.quiet or not animates(self.console) or total < 1:
            return
        self.progress = Progress(
            TextColumn("[bold]removing backgrounds"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("", total=total, status="")

    def _status(self, summary: Summary) -> str:
        parts = []
        failed = len(summary.failures)
        if failed:
            parts.append(f"[red]{failed} failed[/]")
        if self.credits:
            remaining = "?" if summary.credits_remaining is None else summary.credits_remaining
            parts.append(f"credits: {summary.credits_spent} spent, {remaining} left")
        return "  ".join(parts)

    def update(self, outcome: Outcome, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, status=self._status(summary))
        if outcome.status == "failed":
            rid = f" (request id {outcome.request_id})" if outcome.request_id else ""
            self.console.print(f"[red]failed[/] {outcome.item.name}: {outcome.error}{rid}",
                               markup=True, soft_wrap=True)
        elif self.verbose and not summary.dry_run:  # a dry run lists every file on stdout
            item = outcome.item
            self.console.print(f"{outcome.status} {item.name} -> {item.output_name}",
                               markup=False, soft_wrap=True)

    def finish(self, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.quiet:
            return
        table = Table(title="bgremove summary", show_header=False, title_justify="left")
        table.add_column(justify="left")
        table.add_column(justify="right")
        done = summary.count("done")
        if summary.dry_run:
            table.add_row("would process", str(summary.count("would process")))
        else:
            table.add_row("processed", str(done))
        table.add_row("skipped (output exists)", str(summary.count("skipped")))
        if summary.not_images:
            table.add_row("skipped (not images)", str(len(summary.not_images)))
        table.add_row("failed", str(len(summary.failures)))
        if summary.count("not processed"):
            table.add_row("not processed", str(summary.count("not processed")))
        if summary.dry_run and self.credits:
            table.add_row("credits it would cost", str(summary.count("would process")))
        elif self.credits or summary.credits_spent:
            table.add_row("credits spent", str(summary.credits_spent))
            if summary.credits_remaining is not None:
                table.add_row("credits remaining", str(summary.credits_remaining))
        rate = done / summary.seconds if summary.seconds > 0 else 0.0
        if not summary.dry_run:
            table.add_row("time", f"{summary.seconds:.1f} s ({rate:.2f} img/s)")
        self.console.print(table)
        if self.verbose and summary.not_images:
            for path in summary.not_images:
                self.console.print(f"skipped (not an image): {path}", markup=False, soft_wrap=True)
        if summary.failures:
            failures = Table(title="failures", title_justify="left")
            # Paths and reasons are folded, never cut: the user needs them whole.
            failures.add_column("failed file", overflow="fold")
            failures.add_column("reason", overflow="fold")
            if any(o.request_id for o in summary.failures):
                failures.add_column("request id", overflow="fold")
            for o in summary.failures:
                row = [o.item.name, o.error or ""]
                if len(failures.columns) == 3:
                    row.append(o.request_id or "")
                failures.add_row(*row)
            self.console.print(failures)
        if summary.stopped is not None:
            self.console.print(f"[red]stopped: {summary.stopped}[/]")
            left = [o.item.name for o in summary.outcomes if o.status == "not processed"]
            if left:
                self.console.print(f"not processed ({len(left)}): " + ", ".join(left),
                                   markup=False, soft_wrap=True)
        if summary.interrupted:
            dropped = " (work in flight was abandoned, unwritten)" if summary.abandoned else ""
            self.console.print(f"interrupted: finished work was kept{dropped}; run the same "
                               "command again to continue where it stopped.", soft_wrap=True)
