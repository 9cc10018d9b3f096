"""What the user sees on stderr: a live progress bar on a terminal, plain lines elsewhere, and a
summary at the end. stdout is left for data (images, JSON lines)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeGuard

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from bgremove import stamps
from bgremove.cli.exits import exit_code_of, in_flags, outcome_error
from bgremove.outcomes import Outcome, Status, Summary

if TYPE_CHECKING:
    from bgremove.backends import Session
    from bgremove.backends.local import LocalSession

def _is_local(session: Session) -> TypeGuard[LocalSession]:
    return session.kind == "local"


# Name at most this many files in a line of the summary; --report and -v list them all.
NAMED = 10
# Past this many inputs, the failures printed as they happened may have scrolled away: the
# summary lists them again.
RELIST_AFTER = 20


class Rate:
    """Images processed per second, over the last WINDOW seconds, counting only images that went
    through the model (outputs kept up to date take no time: they would make it soar). No rate
    until a few images are done or a few seconds have passed: two workers finishing together
    are not 167 images a second."""

    FEW = 3  # images
    WAIT = 2.0  # seconds
    WINDOW = 30.0  # seconds: a long run's rate follows its pace

    def __init__(self, started: float):
        self.started = started
        self.samples: deque[tuple[float, int]] = deque([(started, 0)])

    def update(self, processed: int, now: float) -> None:
        if processed != self.samples[-1][1]:
            self.samples.append((now, processed))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.WINDOW:
            self.samples.popleft()

    def per_second(self, now: float) -> float | None:
        processed = self.samples[-1][1]
        if not (processed >= self.FEW or (processed and now - self.started >= self.WAIT)):
            return None
        since, before = self.samples[0]
        return (processed - before) / (now - since) if now > since else None

    def eta(self, remaining: int, now: float) -> float | None:
        """Seconds until `remaining` more images are processed at this rate."""
        rate = self.per_second(now)
        return remaining / rate if rate else None


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.fields.get("rate")
        return Text(f"{speed:.2f} img/s" if speed else "-- img/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """The time left at the rate images are processed (Rate), once there is one."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        if eta is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(round(eta), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class CountColumn(ProgressColumn):
    """done/total, or done/found+ while the walk is still finding inputs."""

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else str(int(task.total))
        more = "+" if task.fields.get("walking") else ""
        return Text(f"{int(task.completed)}/{total}{more}", style="progress.download")


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


def names(paths: Sequence[object], total: int, how: str) -> str:
    shown = ", ".join(str(p) for p in paths[:NAMED])
    more = total - min(len(paths), NAMED)
    return shown + (f", and {more} more ({how})" if more > 0 else "")


class ConsoleReporter:
    """Progress and summary on stderr. `verbose` lists every file; `quiet` only failures;
    `silent_on_success` (one image to stdout, a filter as `convert` is) says nothing when it
    worked, unless `verbose`."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False,
                 verbose: bool = False, credits: bool = False, inputs: Sequence[str] = (),
                 silent_on_success: bool = False):
        self.console = console or stderr_console()
        self.quiet = quiet
        self.verbose = verbose
        self.silent_on_success = silent_on_success and not verbose
        self.credits = credits
        self.inputs = list(inputs)
        self.progress: Progress | None = None
        self.task = TaskID(0)
        self.said_watching = False

    @property
    def animated(self) -> bool:
        return not self.quiet and animates(self.console)

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def announce(self, session: Session, model: str | None, mode: str) -> None:
        """What the run uses: a warning when an accelerator was asked for but the CPU runs,
        the model and its provider with -v, and a better model when one is at hand."""
        from bgremove import models as registry
        from bgremove.devices import short

        if session.device_warning:
            self.say(f"bgremove: warning: {in_flags(session.device_warning)}")
        if not _is_local(session):
            return
        if self.verbose:
            where = "bundled" if session.model_name == registry.BUNDLED else session.model_path
            providers = ", ".join(short(p) for p in session.providers)
            architecture = session.architecture.type.value
            self.say(f"model {session.model_name} ({where}) as {architecture} on "
                     f"{short(session.providers[0])} (onnxruntime providers: {providers})")
        if model is None and mode == "quality" and not (self.quiet or self.silent_on_success):
            better = registry.suggest_upgrade()
            if better:
                self.say(f"hint: {better} is downloaded; --model {better} usually gives finer "
                         f"edges than the bundled {registry.BUNDLED} in quality mode.")

    def start(self) -> None:
        if not self.animated:
            return
        self.progress = Progress(
            TextColumn("[bold]removing backgrounds"),
            BarColumn(),
            CountColumn(),
            RateColumn(),
            EtaColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("", total=None, status="", walking=True, rate=None,
                                           eta=None)
        self.rate = Rate(time.monotonic())

    def waiting(self, summary: Summary) -> None:
        """--watch: the work so far is done; say so, and that the run waits for more."""
        if self.progress is not None:
            self.progress.update(self.task, completed=summary.total, total=summary.total,
                                 walking=False, status=f"{self._status(summary)}  watching "
                                 "for new images (Ctrl-C to stop)".strip())
        elif not self.quiet and not self.said_watching:
            self.said_watching = True
            self.say(f"watching {', '.join(self.inputs)} for new images (Ctrl-C to stop)")

    def _status(self, summary: Summary) -> str:
        parts = []
        failed = summary.count(Status.failed)
        if failed:
            parts.append(f"[red]{failed} failed[/]")
        if self.credits:
            remaining = "?" if summary.credits_remaining is None else summary.credits_remaining
            parts.append(f"credits: {summary.credits_spent} spent, {remaining} left")
        return "  ".join(parts)

    def update(self, outcome: Outcome, summary: Summary) -> None:
        if self.progress is not None:
            walking = not summary.walk_done and summary.counted is None
            total = summary.found if walking else (summary.counted or summary.found)
            now = time.monotonic()
            self.rate.update(summary.count(Status.done), now)
            eta = None if walking else self.rate.eta(max(total - summary.total, 0), now)
            self.progress.update(self.task, completed=summary.total, total=total,
                                 walking=walking, status=self._status(summary),
                                 rate=self.rate.per_second(now), eta=eta)
        item = outcome.item
        if outcome.status is Status.failed:
            rid = f" (request id {outcome.request_id})" if outcome.request_id else ""
            said = f" ({outcome.detail})" if outcome.detail and self.verbose else ""
            self.console.print(f"[red]failed[/] {escape(item.name)}: "
                               f"{escape(f'{outcome_error(outcome)}{rid}{said}')}",
                               markup=True, soft_wrap=True, highlight=False)
        elif outcome.status is Status.pruned and not self.quiet:  # files removed: always said
            self.say(f"pruned {item.output_name} ({item.reason})")
        elif self.verbose and not summary.dry_run:  # a dry run lists every file on stdout
            if outcome.status is Status.not_image:
                self.say(f"skipped (not an image): {item.name}")
            else:
                why = f" ({item.reason})" if item.reason else ""
                self.say(f"{outcome.status.value} {item.name} -> {item.output_name}{why}")

    def finish(self, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.quiet or (self.silent_on_success and exit_code_of(summary) == 0):
            return
        count = summary.count
        done = count(Status.done)
        table = Table(title="bgremove summary", show_header=False, title_justify="left")
        table.add_column(justify="left")
        table.add_column(justify="right")
        made = Status.would_process if summary.dry_run else Status.done
        label = ("missing or stale" if summary.check else
                 "would process" if summary.dry_run else "processed")
        table.add_row(label, str(count(made)))
        why = summary.why(made)
        if set(why) - {stamps.NEW}:  # say why outputs are made again; new ones need no word
            for reason, n in why.items():
                table.add_row(f"  {reason}", str(n))
        kept = summary.why(Status.skipped)
        if not kept:
            table.add_row("up to date" if summary.check else "skipped (up to date)", "0")
        for reason, n in kept.items():
            table.add_row(reason if summary.check else f"skipped ({reason})", str(n))
        if count(Status.not_image):
            table.add_row("skipped (not images)", str(count(Status.not_image)))
        for pruning in (Status.pruned, Status.would_prune):
            if count(pruning):
                table.add_row(f"{pruning.value} (input gone)", str(count(pruning)))
        table.add_row("failed", str(count(Status.failed)))
        if count(Status.not_processed):
            table.add_row("not processed", str(count(Status.not_processed)))
        if summary.dry_run and self.credits:
            table.add_row("credits it would cost", str(count(Status.would_process)))
        elif self.credits or summary.credits_spent:
            table.add_row("credits spent", str(summary.credits_spent))
            if summary.credits_remaining is not None:
                table.add_row("credits remaining", str(summary.credits_remaining))
        if done:
            table.add_row("time", f"{summary.seconds:.1f} s ({done / summary.seconds:.2f} img/s)")
        self.console.print(table)
        if summary.prune_skipped:
            self.say(summary.prune_skipped)
        if summary.check:
            stale, orphans = count(Status.would_process), count(Status.would_prune)
            if stale:
                self.say(f"{stale} output{'s are' if stale > 1 else ' is'} missing or stale: "
                         "run the same command without --check to make them")
            if orphans:
                self.say(f"{orphans} output{'s' if orphans > 1 else ''} whose input is gone: "
                         "run the same command without --check to remove them")
            if not stale and not orphans:
                self.say("every output is up to date")
        self._name_the_rest(summary)

    def _name_the_rest(self, summary: Summary) -> None:
        count = summary.count
        if not (summary.total or summary.interrupted or summary.stopped):
            self.say(f"no images found in {', '.join(self.inputs) or 'the inputs'}")
        elif summary.total == count(Status.not_image) and not summary.dry_run:
            self.say("no images found: none of the files found is an image")
        if count(Status.not_image) and not self.verbose:
            self.say("not images: " + names(summary.not_images, count(Status.not_image),
                                            "-v or --report lists them all"))
        failed = count(Status.failed)
        if failed and summary.total > RELIST_AFTER:
            failures = Table(title="failures", title_justify="left")
            # Paths and reasons are folded, never cut: the user needs them whole.
            failures.add_column("failed file", overflow="fold")
            failures.add_column("reason", overflow="fold")
            with_ids = any(o.request_id for o in summary.failures)
            if with_ids:
                failures.add_column("request id", overflow="fold")
            for o in summary.failures:
                row = [o.item.name, outcome_error(o) or ""]
                if with_ids:
                    row.append(o.request_id or "")
                failures.add_row(*row)
            self.console.print(failures)
            if failed > len(summary.failures):
                self.say(f"... and {failed - len(summary.failures)} more failures "
                         "(--report lists them all)")
        if summary.stopped is not None:
            self.console.print(f"[red]stopped: {in_flags(summary.stopped)}[/]", soft_wrap=True)
            left = count(Status.not_processed)
            if left:
                self.say(f"not processed ({left}): " + names(
                    [o.item.name for o in summary.not_processed], left, "--report lists them"))
        if summary.interrupted:
            dropped = " (work in flight was abandoned, unwritten)" if summary.abandoned else ""
            self.say(f"interrupted: finished work was kept{dropped}; run the same command again "
                     "to continue where it stopped.")
