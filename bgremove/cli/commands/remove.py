"""`bgremove remove`, the default command (`bgremove photos/ -o cutouts/`), and one run of it on
the library's public API: settings to a `Batch` and a session, the reporters, Ctrl-C and SIGTERM,
the report. The command parses arguments into a `Job` and `Settings`, `run` runs it, and the
command maps the result to an exit code. Heavy modules are imported inside `run`: `bgremove
--help` stays fast."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument

import bgremove
from bgremove.cli.commands import reported_errors
from bgremove.cli.exits import exit_code_of, in_flags
from bgremove.cli.params import Given, SectionedCommand, takes_settings
from bgremove.cli.redirect import stdout_file_name
from bgremove.cli.settings import MESSAGES, OUTPUT, RUNS, SETTING_NAMES, Settings
from bgremove.errors import UsageError
from bgremove.naming import STDIO
from bgremove.options import OutputFormat
from bgremove.plan import Shard

if TYPE_CHECKING:
    from bgremove.backends import Session
    from bgremove.cli.progress import ConsoleReporter
    from bgremove.cli.report import Reporter, Reporters
    from bgremove.cluster import Cluster, DaskExecutor


@dataclass
class Job:
    """What to process and how to report it; the removal settings live in `Settings`."""

    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    files_from: str | None = None
    shard: str | None = None
    overwrite: bool = False
    keep_unstamped: bool = False
    prune: bool = False
    dry_run: bool = False
    check: bool = False
    json_lines: bool = False
    report: Path | None = None
    quiet: bool = False
    verbose: bool = False
    watch: bool = False  # then keep processing what arrives (watch.py)

    @property
    def image_on_stdin(self) -> bool:
        return STDIO in self.inputs

    @property
    def image_on_stdout(self) -> bool:
        return self.output == STDIO or (self.output is None and self.inputs == [STDIO]
                                        and self.files_from is None)

    def validate(self) -> None:
        """Refuse combinations that cannot work, before anything is read or loaded."""
        if self.quiet and self.verbose:
            raise UsageError("-q/--quiet and -v/--verbose contradict each other: pick one")
        if self.check and self.overwrite:
            raise UsageError("--check with --overwrite would call every output stale: drop "
                             "--overwrite")
        if self.check and (self.image_on_stdin or self.image_on_stdout):
            raise UsageError("--check compares outputs on disk with their inputs: name files "
                             "or folders and -o FOLDER (or -o FILE), not stdin or stdout (-)")
        if self.files_from == STDIO and self.image_on_stdin:
            raise UsageError("stdin can carry an image (-) or a list (--files-from -), not both")
        if self.json_lines and self.image_on_stdout:
            raise UsageError("--json writes to stdout, which already carries the image: "
                             "use -o FILE, or --report FILE for a JSON summary")
        if self.dry_run or self.check:
            return
        if self.image_on_stdin and sys.stdin.isatty():
            raise UsageError("stdin is a terminal: pipe an image in "
                             "(bgremove - < photo.jpg > cut.webp)")
        if self.image_on_stdout and sys.stdout.isatty():
            raise UsageError("stdout is a terminal: redirect it (> cut.webp) "
                             "or write a file (-o cut.webp)")

    def describe(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "output": self.output, "files_from": self.files_from,
                "shard": self.shard, "overwrite": self.overwrite,
                "keep_unstamped": self.keep_unstamped, "prune": self.prune,
                "dry_run": self.dry_run,
                "check": self.check}


def open_remote(settings: Settings) -> bgremove.RemoteSession:
    """The API client the settings ask for."""
    from bgremove.cli.settings import api_key_from

    key = api_key_from(settings)
    if key is None:
        raise UsageError("--backend remote needs an API key: --api-key-file FILE, the "
                         "BGREMOVE_API_KEY environment variable, api_key in the config file, "
                         "or --api-key KEY")
    return bgremove.RemoteSession(settings.api_url, key, rate_limit=settings.rate_limit,
                                  rate_window=settings.rate_window)


def check_cluster(job: Job, settings: Settings) -> None:
    """Refuse what `--cluster` cannot do, before anything is loaded; and import Dask, only now."""
    if settings.backend == "remote":
        raise UsageError("--cluster runs the model on Dask workers; with --backend remote the "
                         "API key's rate limit is the bound, and one machine reaches it: drop "
                         "--cluster")
    if job.image_on_stdin or job.image_on_stdout:
        raise UsageError("--cluster sends files to Dask workers: name files or folders and "
                         "-o FOLDER, not stdin or stdout (-)")
    from bgremove.extras import needs_extra

    with needs_extra("cluster", ("dask", "distributed"), "--cluster"):
        import_module("bgremove.cluster")


def check_watch(job: Job, settings: Settings) -> None:
    """What --watch cannot do, said before anything is processed; and the watcher, imported."""
    if job.image_on_stdin or job.image_on_stdout or job.files_from is not None:
        raise UsageError("--watch follows folders: name input folders and -o FOLDER, not stdin, "
                         "stdout (-) or --files-from")
    for flag, given in (("--dry-run", job.dry_run), ("--check", job.check),
                        ("--prune", job.prune), ("--shard", job.shard is not None),
                        ("--cluster", settings.cluster is not None)):
        if given:
            raise UsageError(f"--watch keeps processing what arrives: it cannot be combined "
                             f"with {flag}")
    if not any(Path(raw).is_dir() for raw in job.inputs):
        raise UsageError("--watch follows folders: name at least one input folder")
    try:
        import watchfiles  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "watchfiles":
            raise
        raise UsageError("--watch needs watchfiles, which is missing from this install: pip "
                         "install watchfiles (or reinstall bgremove)") from None


def open_cluster(settings: Settings, batch: bgremove.Batch, mode: str,
                 ) -> tuple[Cluster, DaskExecutor]:
    """The cluster the settings name, and the executor that runs `batch` on it."""
    from bgremove import cluster as dask_cluster
    from bgremove.devices import place
    from bgremove.parallel import plan_local

    address = settings.cluster
    assert address is not None
    if batch.output_folder is None:
        raise UsageError("--cluster writes into an output folder (-o FOLDER), not one file")
    place(settings.device)  # an unknown device is a usage error here, not on every worker
    if address.partition(":")[0] == "local":  # the workers share this machine: its models
        from bgremove.models import resolve

        resolve(settings.model)
    workers = settings.workers or plan_local(None, None, device=settings.device, mode=mode,
                                             images=batch.known_count)[0]
    cluster = dask_cluster.connect(address, local_workers=workers)
    try:
        executor = dask_cluster.DaskExecutor(cluster, model=settings.model,
                                             device=settings.device, threads=settings.threads,
                                             precision=settings.precision,
                                             model_type=settings.model_type)
    except BaseException:
        cluster.close()
        raise
    return cluster, executor


def new_batch(job: Job, settings: Settings) -> bgremove.Batch:
    """The batch the job and the settings describe, checked before anything is loaded."""
    from bgremove.inputs import read_file_list
    from bgremove.precision import stamp_models
    from bgremove.stamps import remote_model_id

    job.validate()
    options = settings.removal_options()
    remote = settings.backend == "remote"
    if remote and settings.model is not None:
        raise UsageError("--model is for the local backend; the API picks its own model")
    if remote and settings.model_type is not None:
        raise UsageError("--model-type is for the local backend's model files; the API picks "
                         "its own model")
    if settings.cluster is not None:
        check_cluster(job, settings)
    if job.watch:
        check_watch(job, settings)
    # What a dry run's stamps name; under --precision auto the outputs of the bundled model's
    # other build count as up to date too (docs/usage-and-options.md: up-to-date outputs).
    model_id, interchangeable = (
        (remote_model_id(settings.api_url), ()) if remote
        else stamp_models(settings.model, settings.precision, settings.device,
                          settings.model_type))
    return bgremove.Batch(
        job.inputs, job.output, options=options,
        listed=read_file_list(job.files_from) if job.files_from is not None else None,
        shard=Shard.parse(job.shard) if job.shard is not None else None,
        overwrite=job.overwrite, keep_unstamped=job.keep_unstamped, dry_run=job.dry_run,
        check=job.check, prune=job.prune, max_credits=settings.max_credits, remote=remote,
        model_id=model_id, interchangeable=interchangeable)


def new_reporter(job: Job, settings: Settings, dry_run: bool,
                 ran: dict[str, Any]) -> tuple[ConsoleReporter, Reporters]:
    """The console (progress, summary) and every reporter the job asks for, in order."""
    from bgremove.cli.progress import ConsoleReporter
    from bgremove.cli.report import JsonLinesReporter, PlanListing, Reporters, ReportWriter

    console = ConsoleReporter(quiet=job.quiet, verbose=job.verbose,
                              credits=settings.backend == "remote", inputs=job.inputs,
                              silent_on_success=job.image_on_stdout)
    reporters: list[Reporter] = [console]
    if job.json_lines:
        reporters.insert(0, JsonLinesReporter())
    elif dry_run:
        reporters.insert(0, PlanListing(check=job.check))
    if job.report is not None:
        reporters.append(ReportWriter(job.report, ran))
    return console, Reporters(*reporters)


@dataclass
class Engine:
    """What runs the images: a session (local or remote) and how many images it keeps in
    flight, or a Dask cluster and its executor. Nothing for a dry run."""

    session: Session | None = None
    workers: int = 1
    cluster: Cluster | None = None
    executor: DaskExecutor | None = None

    def close(self, abandoned: bool) -> None:
        # An abandoned batch may still have threads inside the session: leave it open.
        if self.session is not None and not abandoned:
            self.session.close()
        if self.cluster is not None:  # a local cluster's workers end here, abandoned or not
            self.cluster.close()


def open_engine(job: Job, settings: Settings, batch: bgremove.Batch, console: ConsoleReporter,
                ran: dict[str, Any]) -> Engine:
    """The one place a run opens what does its work; `ran` (the report's settings) learns how
    it was sized."""
    from bgremove.parallel import plan

    mode = batch.options.mode.value
    if settings.cluster is not None:
        engine = Engine()
        try:
            engine.cluster, engine.executor = open_cluster(settings, batch, mode)
        except Exception:
            # A Ctrl-C to the terminal while a local cluster starts reaches its workers too
            # (they ignore it only once started): the start fails, and the run is over.
            if not batch.stops:
                raise
            return engine
        executor = engine.executor
        ran.update(workers=executor.workers, threads=executor.threads)
        for warning in executor.warnings:
            console.say(f"bgremove: warning: on the Dask workers: {in_flags(warning)}")
        if job.verbose:
            console.say(f"cluster {settings.cluster}: {executor.workers} worker threads, "
                        f"{executor.chunk_size} files per task")
        return engine
    if settings.backend == "remote":
        workers, threads = plan(settings.workers, settings.threads, remote=True)
        session: Session = open_remote(settings)
        ran.update(workers=workers, threads=threads)
    else:
        from bgremove.api import open_local

        local, workers = open_local(settings.model, device=settings.device,
                                    workers=settings.workers, threads=settings.threads,
                                    mode=mode, images=batch.known_count,
                                    precision=settings.precision,
                                    model_type=settings.model_type)
        session = local
        ran.update(workers=workers, threads=local.threads)
    console.announce(session, settings.model, mode)
    return Engine(session, workers)


def run(job: Job, settings: Settings) -> bgremove.Summary:
    """Run the job to the end, or until interrupted. On a second interrupt this returns with
    `summary.abandoned` set while worker threads may still be busy: exit with
    `interrupts.exit_now` then, not a normal exit that would wait for them."""
    from bgremove.cli import interrupts

    batch = new_batch(job, settings)
    dry_run = batch.dry_run  # --check is a dry run too
    ran = {**job.describe(), **settings.public()}  # for the report: the workers are sized below
    console, reporter = new_reporter(job, settings, dry_run, ran)
    loading = True

    def on_signal() -> None:
        batch.stop()
        if loading and batch.stops > 1:
            raise KeyboardInterrupt  # a second Ctrl-C while the model loads: out at once

    # From here on Ctrl-C and SIGTERM stop the batch cleanly, even while the model loads: the
    # run then ends at once, with its summary and report.
    with interrupts.calling(on_signal):
        for _ in range(interrupts.take_early()):  # Ctrl-C while Python was starting
            on_signal()
        engine = Engine() if dry_run else open_engine(job, settings, batch, console, ran)
        loading = False
        summary = None
        try:
            console.start()
            summary = batch.run(engine.session, workers=engine.workers,
                                on_progress=reporter.update, count_ahead=console.animated,
                                executor=engine.executor)
            if job.watch and engine.session is not None and not (
                    summary.interrupted or summary.stopped):
                from bgremove.watch import Watch, follow

                watching = Watch()  # Ctrl-C and SIGTERM now stop the watch
                with interrupts.calling(watching.stop):
                    summary = follow(batch, engine.session, summary, workers=engine.workers,
                                     on_progress=reporter.update, on_wait=console.waiting,
                                     watch=watching)
        finally:
            engine.close(abandoned=summary is not None and summary.abandoned)
    reporter.finish(summary)
    return summary


class InputsCommand(SectionedCommand):
    """Shows `INPUT...` in the usage and help without typer's `<list[str]>` type label."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                shown = f"[{param.metavar}]"
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
                param._usage_display_name = partial(str, shown)  # type: ignore[method-assign]


@takes_settings(*SETTING_NAMES)
def remove(
    ctx: typer.Context,
    given: Given,
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Image files, folders, or - for stdin.", metavar="INPUT...",
        show_default=False)] = None,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="PATH", help="Output folder (mirrors input sub-folders), "
        "or a file for one input (.png, .webp or .jpg), or - for stdout.",
        rich_help_panel=OUTPUT)] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Redo every output, even those that are up to date.", rich_help_panel=RUNS)] = False,
    keep_unstamped: Annotated[bool, typer.Option(
        "--keep-unstamped", help="Keep outputs that carry no bgremove stamp (made by hand, or "
        "by a bgremove before 0.3) instead of making them again.", rich_help_panel=RUNS)] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="After a run without failures, remove the outputs under -o whose input "
        "is gone (only files bgremove stamped).", rich_help_panel=RUNS)] = False,
    files_from: Annotated[str | None, typer.Option(
        metavar="FILE", help="Also process the paths listed in FILE (- for stdin), one per line; "
        "blank lines and # comments are ignored.", rich_help_panel=RUNS)] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="After the run, keep running: process every image that appears "
        "or changes in the input folders, until Ctrl-C.", rich_help_panel=RUNS)] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be processed and skipped (and the credits it "
        "would cost); write nothing.", rich_help_panel=RUNS)] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; list every output that is missing or stale and exit 1 "
        "if there is one, 0 when all are up to date (for CI).", rich_help_panel=RUNS)] = False,
    shard: Annotated[str | None, typer.Option(
        metavar="K/N", help="Process only part K of N of the inputs, for a CI matrix of N jobs.",
        rich_help_panel=RUNS)] = None,
    json_lines: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per file on stdout as each finishes.",
        rich_help_panel=MESSAGES)] = False,
    report: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Write the whole run's summary to FILE as one JSON document.",
        rich_help_panel=MESSAGES)] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only report failures.",
                                        rich_help_panel=MESSAGES)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List every file.",
                                          rich_help_panel=MESSAGES)] = False,
) -> None:
    # The parameters are named after the Job's fields: they flow to it by name.
    params = ctx.params
    with reported_errors():
        job = Job(**{f.name: params[f.name] for f in fields(Job)})
        job.inputs = list(job.inputs or [])
        # `> y.png` names the output as `-o y.png` does, where the redirect's file can be named.
        redirect = stdout_file_name() if job.image_on_stdout else None
        implied = {}
        if "output_format" not in given.flags:
            named = _format_from_output(params["output"] if redirect is None else redirect)
            if named is not None:
                implied["output_format"] = named
        elif redirect is not None:
            _warn_if_the_name_disagrees(redirect, given.flags["output_format"])
        summary = run(job, given.load(**implied))
    if summary.abandoned:
        from bgremove.cli.interrupts import exit_now

        exit_now(exit_code_of(summary))
    raise typer.Exit(exit_code_of(summary))


def _format_from_output(output: str | None) -> OutputFormat | None:
    """`-o cut.png` asks for PNG (a folder named `x.png` is still a folder)."""
    if not output or output == "-" or os.path.isdir(output):
        return None
    return OutputFormat.from_suffix(Path(output).suffix)


def _warn_if_the_name_disagrees(name: str, asked: object) -> None:
    try:
        chosen = OutputFormat(asked)
    except ValueError:
        return  # the settings refuse it, with the choices
    named = OutputFormat.from_suffix(Path(name).suffix)
    if named is not None and named is not chosen:
        typer.echo(f"bgremove: warning: stdout is {name}, whose name says {named.label}, but "
                   f"--output-format {chosen.value} writes {chosen.label} into it", err=True)


def register(app: typer.Typer) -> None:
    app.command(
        "remove",
        cls=InputsCommand,
        help="Remove the background of images: files, folders, or - for stdin.\n\n"
        "Folders are walked recursively and mirrored under -o. Outputs that are up to date (made "
        "from the same input, options and model, as the stamp inside each output says) are kept; "
        "the rest are made.\n\n"
        "Example: bgremove photos/ -o cutouts/ --output-format png",
    )(remove)
