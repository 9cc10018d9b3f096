"""`bgremove remove`, the default command (`bgremove photos/ -o cutouts/`), and one run of it on
the library's public API: settings to a `Batch` and a session, the reporters, Ctrl-C and SIGTERM,
the report. The command parses arguments into a `Job` and `Settings`, `run` runs it, and the
command maps the result to an exit code. Heavy modules are imported inside `run`: `bgremove
--help` stays fast."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from enum import Enum
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

import bgremove
from bgremove.commands import ConfigOption, reported_errors
from bgremove.config import DEFAULTS, SETTING_NAMES, Settings
from bgremove.config import load as load_settings
from bgremove.errors import UsageError
from bgremove.exits import in_flags
from bgremove.naming import STDIO
from bgremove.options import Mode, OutputFormat
from bgremove.plan import Shard
from bgremove.redirect import stdout_file_name


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
    from bgremove.apikey import api_key_from

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


def open_cluster(settings: Settings, batch: bgremove.Batch, mode: str):
    """The cluster the settings name, and the executor that runs `batch` on it."""
    from bgremove import cluster as dask_cluster
    from bgremove.devices import place
    from bgremove.parallel import plan_local

    if batch.output_folder is None:
        raise UsageError("--cluster writes into an output folder (-o FOLDER), not one file")
    place(settings.device)  # an unknown device is a usage error here, not on every worker
    local = settings.cluster.partition(":")[0] == "local"
    if local:  # the workers share this machine: its models are theirs
        from bgremove.models import resolve

        resolve(settings.model)
    workers = settings.workers or plan_local(None, None, device=settings.device, mode=mode,
                                             images=batch.known_count)[0]
    cluster = dask_cluster.connect(settings.cluster, local_workers=workers)
    try:
        executor = dask_cluster.DaskExecutor(batch, cluster, model=settings.model,
                                             device=settings.device, threads=settings.threads,
                                             precision=settings.precision)
    except BaseException:
        cluster.close()
        raise
    return cluster, executor


def run(job: Job, settings: Settings) -> bgremove.Summary:
    """Run the job to the end, or until interrupted. On a second interrupt this returns with
    `summary.abandoned` set while worker threads may still be busy: exit with
    `interrupts.exit_now` then, not a normal exit that would wait for them."""
    from bgremove import interrupts
    from bgremove.inputs import read_file_list
    from bgremove.parallel import plan
    from bgremove.precision import stamp_models
    from bgremove.progress import ConsoleReporter
    from bgremove.report import JsonLinesReporter, PlanListing, Reporters, ReportWriter
    from bgremove.stamps import remote_model_id

    job.validate()
    options = settings.removal_options()
    if settings.backend == "remote" and settings.model is not None:
        raise UsageError("--model is for the local backend; the API picks its own model")
    if settings.cluster is not None:
        check_cluster(job, settings)
    if job.watch:
        from bgremove.watch import refuse

        refuse(job, settings)
    # what a dry run's stamps name; under --precision auto the bundled model's other build's
    # outputs count as up to date too (issue 34, README "Usage": outputs that are up to date)
    model_id, interchangeable = (
        (remote_model_id(settings.api_url), ()) if settings.backend == "remote"
        else stamp_models(settings.model, settings.precision, settings.device))
    batch = bgremove.Batch(
        job.inputs, job.output, options=options,
        listed=read_file_list(job.files_from) if job.files_from is not None else None,
        shard=Shard.parse(job.shard) if job.shard is not None else None,
        overwrite=job.overwrite, keep_unstamped=job.keep_unstamped, dry_run=job.dry_run,
        check=job.check, prune=job.prune, max_credits=settings.max_credits,
        remote=settings.backend == "remote",
        model_id=model_id, interchangeable=interchangeable)
    dry_run = batch.dry_run  # --check is a dry run too

    remote = settings.backend == "remote"
    console = ConsoleReporter(quiet=job.quiet, verbose=job.verbose, credits=remote,
                              inputs=job.inputs, silent_on_success=job.image_on_stdout)
    reporters = [console]
    if job.json_lines:
        reporters.insert(0, JsonLinesReporter())
    elif dry_run:
        reporters.insert(0, PlanListing(check=job.check))
    ran = {**job.describe(), **settings.public()}  # for the report: the workers are sized below
    if job.report is not None:
        reporters.append(ReportWriter(job.report, ran))
    reporter = Reporters(*reporters)

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
        session = cluster = executor = None
        workers = 1
        if not dry_run and settings.cluster is not None:
            try:
                cluster, executor = open_cluster(settings, batch, options.mode.value)
            except Exception:
                # A Ctrl-C to the terminal while a local cluster starts reaches its workers too
                # (they ignore it only once started): the start fails, and the run is over.
                if not batch.stops:
                    raise
            if executor is not None:
                ran.update(workers=executor.workers, threads=executor.threads)
                for warning in executor.warnings:
                    console.say(f"bgremove: warning: on the Dask workers: {in_flags(warning)}")
                if job.verbose:
                    console.say(f"cluster {settings.cluster}: {executor.workers} worker "
                                f"threads, {executor.chunk_size} files per task")
        elif not dry_run and remote:
            workers, threads = plan(settings.workers, settings.threads, remote=True)
            ran.update(workers=workers, threads=threads)
            session = open_remote(settings)
            console.announce(session, settings.model, options.mode.value)
        elif not dry_run:
            from bgremove.api import open_local

            local, workers = open_local(settings.model, device=settings.device,
                                        workers=settings.workers, threads=settings.threads,
                                        mode=options.mode.value, images=batch.known_count,
                                        precision=settings.precision)
            session = local
            ran.update(workers=workers, threads=local.threads)
            console.announce(session, settings.model, options.mode.value)
        loading = False
        summary = None
        try:
            console.start()
            summary = batch.run(session, workers=workers, on_progress=reporter.update,
                                count_ahead=console.animated, executor=executor)
            if job.watch and not (summary.interrupted or summary.stopped):
                from bgremove.watch import follow

                summary = follow(batch, session, summary, workers=workers,
                                 on_progress=reporter.update, on_wait=console.waiting)
        finally:
            # An abandoned batch may still have threads inside the session: leave it open.
            if session is not None and not (summary is not None and summary.abandoned):
                session.close()
            if cluster is not None:  # a local cluster's workers end here, abandoned or not
                cluster.close()
    reporter.finish(summary)
    return summary


class Backend(str, Enum):
    local = "local"
    remote = "remote"


class InputsCommand(TyperCommand):
    """Shows `INPUT...` in the usage and help without typer's `<list[str]>` type label."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None
                param._usage_display_name = lambda shown=f"[{param.metavar}]": shown


def remove(
    ctx: typer.Context,
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Image files, folders, or - for stdin.", metavar="INPUT...",
        show_default=False)] = None,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="PATH", help="Output folder (mirrors input sub-folders), "
        "or a file for one input (.png, .webp or .jpg), or - for stdout.")] = None,
    mode: Annotated[Mode, typer.Option(help="fast | balanced | quality.",
                                       case_sensitive=False)] = DEFAULTS.mode,
    output_format: Annotated[str | None, typer.Option(
        "--output-format", "--format", "-f", metavar="png|webp|jpeg",
        help="Output format [default: webp, or the -o file's extension]. JPEG has no "
        "transparency: the background is filled.", show_default=False)] = None,
    include_mask: Annotated[bool, typer.Option(
        help="Transparent background (RGBA); off: background filled with --background-color."
    )] = DEFAULTS.include_mask,
    smooth_edges: Annotated[bool, typer.Option(
        help="Anti-aliased soft edges; off: hard edges, each pixel fully in or out.",
    )] = DEFAULTS.smooth_edges,
    preserve_shadows: Annotated[bool, typer.Option(
        help="Keep the subject's cast shadow as a soft semi-transparent layer.",
    )] = DEFAULTS.preserve_shadows,
    background_color: Annotated[str, typer.Option(
        metavar="COLOUR", help="Fill the background with this colour (#rrggbb or a name); "
        "implies --no-include-mask.")] = DEFAULTS.background_color,
    max_size: Annotated[int | None, typer.Option(
        metavar="PIXELS", help="Shrink photos whose longer side is bigger to this size first "
        "(instead of refusing those over the size limit).", show_default=False, min=1)] = None,
    only_mask: Annotated[bool, typer.Option(
        "--only-mask", "-om", help="Write the matte (8-bit greyscale: the alpha of the "
        "cut-out), not the cut-out. JPEG works too.")] = DEFAULTS.only_mask,
    model: Annotated[str | None, typer.Option(
        metavar="NAME|PATH", help="Model name (see `bgremove models list`) or an .onnx file.",
        show_default="u2netp, bundled")] = None,
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="Where the model runs: auto | cpu | cuda | rocm | directml | "
        "coreml | openvino | tensorrt (onnxruntime execution providers; auto: the best "
        "installed accelerator, else cpu).", show_default="auto")] = None,
    precision: Annotated[str | None, typer.Option(
        metavar="fp32|int8|auto", help="The bundled model's arithmetic: int8 is its quantised "
        "build, about twice as fast on CPUs with VNNI or AMX; auto: int8 there, checked "
        "against fp32 as it loads; fp32 elsewhere.",
        show_default="auto")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N", help="Images processed at once.",
        show_default="one per core, by memory; GPU: half the cores; remote: 8", min=1)] = None,
    threads: Annotated[int | None, typer.Option(
        metavar="N", help="onnxruntime threads per image.", show_default="cores / workers",
        min=1)] = None,
    backend: Annotated[Backend, typer.Option(
        help="local: the model on this machine; remote: the Background Removal API.",
    )] = Backend.local,
    api_url: Annotated[str | None, typer.Option(
        metavar="URL", help="API endpoint (remote backend), e.g. a `bgremove serve`.",
        show_default=DEFAULTS.api_url)] = None,
    api_key: Annotated[str | None, typer.Option(
        metavar="KEY", help="API key (remote backend). Prefer --api-key-file or BGREMOVE_API_KEY: "
        "a command line is visible to other users of the machine.", show_default=False)] = None,
    api_key_file: Annotated[Path | None, typer.Option(
        metavar="FILE", help="File holding the API key.", show_default=False)] = None,
    rate_limit: Annotated[int | None, typer.Option(
        metavar="N", help="Requests started per --rate-window at most (remote backend).",
        show_default=str(DEFAULTS.rate_limit), min=1)] = None,
    rate_window: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="The window --rate-limit counts in.",
        show_default=f"{DEFAULTS.rate_window:g}", min=0.001)] = None,
    max_credits: Annotated[int | None, typer.Option(
        metavar="N", help="Stop once this many credits are spent (remote backend).",
        show_default=False, min=1)] = None,
    cluster: Annotated[str | None, typer.Option(
        metavar="local[:N]|ADDRESS|FILE", help="Process the images on Dask workers: local:N "
        "starts N worker processes here; tcp://HOST:8786 or a scheduler .json file joins a "
        "running cluster that shares the filesystem. Needs bgremove[cluster].",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Redo every output, even those that are up to date.")] = False,
    keep_unstamped: Annotated[bool, typer.Option(
        "--keep-unstamped", help="Keep outputs that carry no bgremove stamp (made by hand, or "
        "by a bgremove before 0.3) instead of making them again.")] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="After a run without failures, remove the outputs under -o whose input "
        "is gone (only files bgremove stamped).")] = False,
    files_from: Annotated[str | None, typer.Option(
        metavar="FILE", help="Also process the paths listed in FILE (- for stdin), one per line; "
        "blank lines and # comments are ignored.")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="After the run, keep running: process every image that appears "
        "or changes in the input folders, until Ctrl-C.")] = False,
    json_lines: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per file on stdout as each finishes.")] = False,
    report: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Write the whole run's summary to FILE as one JSON document.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be processed and skipped (and the credits it "
        "would cost); write nothing.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; list every output that is missing or stale and exit 1 "
        "if there is one, 0 when all are up to date (for CI).")] = False,
    shard: Annotated[str | None, typer.Option(
        metavar="K/N", help="Process only part K of N of the inputs, for a CI matrix of N jobs.",
    )] = None,
    config: ConfigOption = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only report failures.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List every file.")] = False,
) -> None:
    # The parameters are named after the Job's fields and the settings, and flow to them by
    # name: the settings typed on the command line win over the environment and config file.
    params = ctx.params
    with reported_errors():
        given = _given_on_command_line(ctx)
        job = Job(**{f.name: params[f.name] for f in fields(Job)})
        job.inputs = list(job.inputs or [])
        # `> y.png` names the output as `-o y.png` does, where the redirect's file can be named.
        redirect = stdout_file_name() if job.image_on_stdout else None
        if "output_format" not in given:
            implied = _format_from_output(params["output"] if redirect is None else redirect)
            if implied is not None:
                given["output_format"] = implied
        elif redirect is not None:
            _warn_if_the_name_disagrees(redirect, given["output_format"])
        settings = load_settings(given, config=params["config"])
        summary = run(job, settings)
    if summary.abandoned:
        from bgremove.interrupts import exit_now

        exit_now(summary.exit_code)
    raise typer.Exit(summary.exit_code)


def _given_on_command_line(ctx: typer.Context) -> dict[str, object]:
    """The settings the user typed: they win over the environment and the config file."""
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        name = param.name
        if name in SETTING_NAMES and source is not None and source.name == "COMMANDLINE":
            value = ctx.params[name]
            given[name] = str(value) if isinstance(value, Path) else value
    return given


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
