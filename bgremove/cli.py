"""The command line: parse arguments into options, call the engine, map errors to exit codes.

Heavy modules (numpy, onnxruntime, Pillow's codecs, the server) are imported inside the commands
that need them, so `bgremove --help` and `bgremove --version` start in a blink.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from bgremove import __version__
from bgremove.commands import fail, reported_errors
from bgremove.config import DEFAULTS, SETTING_NAMES, config_path
from bgremove.config import describe as describe_settings
from bgremove.config import load as load_settings
from bgremove.exits import USAGE
from bgremove.options import Mode, OutputFormat
from bgremove.redirect import stdout_file_name

if TYPE_CHECKING:  # typer vendors click; only its types are named here
    import click



class Backend(str, Enum):
    local = "local"
    remote = "remote"

ConfigOption = Annotated[str | None, typer.Option(
    "--config", metavar="FILE", show_default=False,
    help="Settings file to read [default: $BGREMOVE_CONFIG, else "
    "$XDG_CONFIG_HOME/bgremove/config.toml, else ~/.config/bgremove/config.toml]")]


class DefaultCommandGroup(TyperGroup):
    """`bgremove in/ -o out/` means `bgremove remove in/ -o out/`: anything that is not a
    sub-command name (or a top-level flag) is handed to the default command."""

    default_command = "remove"
    top_level_flags = {"--help", "-h", "--version", "--install-completion", "--show-completion"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in self.top_level_flags:
            _refuse_a_mistyped_command(args, list(self.commands))
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)  # parses the sub-command's arguments, then runs it
        except typer.BadParameter as exc:
            exc.message = _plain_words(exc.message, exc.__cause__)
            raise

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list:
        # `bgremove --mo<TAB>` offers the default command's options too, as `bgremove --mode`
        # runs that command.
        results = super().shell_complete(ctx, incomplete)
        if incomplete.startswith("-"):
            known = {item.value for item in results}
            default = self.commands[self.default_command]
            results += [item for item in default.shell_complete(ctx, incomplete)
                        if item.value not in known]
        return results


class InputsCommand(TyperCommand):
    """Shows `INPUT...` in the usage and help without typer's `<list[str]>` type label."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None
                param._usage_display_name = lambda shown=f"[{param.metavar}]": shown


# Typer checks option values with pydantic, whose messages speak of Python ("Value error, ...",
# "Input should be a valid integer, unable to parse string as an integer").
_PYDANTIC_WORDS = [
    (r"^Value error, ", ""),
    (r"^Input should be a valid integer.*", "{value} is not a whole number"),
    (r"^Input should be a valid number.*", "{value} is not a number"),
    (r"^Input should be greater than or equal to (\S+)", r"must be \1 or more, not {value}"),
    (r"^Input should be less than or equal to (\S+)", r"must be \1 or less, not {value}"),
    (r"^Input should be greater than (\S+)", r"must be more than \1, not {value}"),
    (r"^Input should be less than (\S+)", r"must be less than \1, not {value}"),
    (r"^Input should be (.*)", r"should be \1, not {value}"),
]


def _plain_words(message: str, cause: BaseException | None) -> str:
    import re

    errors = getattr(cause, "errors", None)
    value = errors()[0].get("input") if callable(errors) and errors() else None
    for pattern, words in _PYDANTIC_WORDS:
        if re.match(pattern, message):
            return re.sub(pattern, words, message).replace("{value}", repr(value))
    return message


def _refuse_a_mistyped_command(args: list[str], commands: list[str]) -> None:
    """`bgremove model list` or `bgremove remvoe x`: a word that names no file but is close to a
    command is a typo, not an input that does not exist."""
    from difflib import get_close_matches

    word = args[0]
    if word.startswith("-") or os.path.lexists(word):
        return
    match = get_close_matches(word, commands, n=1, cutoff=0.6)
    if match:
        meant = " ".join([match[0], *args[1:3]])
        fail(f"no such command or file: {word!r}. Did you mean `bgremove {meant}`? "
              "(see bgremove --help)", USAGE)


app = typer.Typer(
    cls=DefaultCommandGroup,
    help="Remove image backgrounds in bulk, offline or through the Background Removal API.\n\n"
    "Example: bgremove photos/ -o cutouts/ --mode quality",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bgremove {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from bgremove import interrupts

    if ctx.invoked_subcommand != "remove":  # the remove command handles interrupts itself
        interrupts.like_ctrl_c()


@app.command(
    "remove",
    cls=InputsCommand,
    help="Remove the background of images: files, folders, or - for stdin.\n\n"
    "Folders are walked recursively and mirrored under -o. Outputs that are up to date (made "
    "from the same input, options and model, as the stamp inside each output says) are kept; "
    "the rest are made.\n\n"
    "Example: bgremove photos/ -o cutouts/ --output-format png",
)
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
        "build, about twice as fast on CPUs with VNNI or AMX; auto is fp32 for now.",
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
    from bgremove import job as jobs

    params = ctx.params
    with reported_errors():
        given = _given_on_command_line(ctx)
        job = jobs.Job(**{f.name: params[f.name] for f in fields(jobs.Job)})
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
        summary = jobs.run(job, settings)
    if summary.abandoned:
        from bgremove.interrupts import exit_now

        exit_now(summary.exit_code)
    raise typer.Exit(summary.exit_code)


config_app = typer.Typer(
    help="Show the settings bgremove uses, and where each comes from.\n\n"
    "Flags win over BGREMOVE_* variables, which win over the config file.\n\n"
    "Example: bgremove config show",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(config_app, name="config")


@config_app.command(
    "show",
    help="Print the effective settings and where each comes from.\n\n"
    "The API key is masked: only its last 4 characters are shown.\n\n"
    "Example: BGREMOVE_MODE=fast bgremove config show",
)
def config_show(config: ConfigOption = None) -> None:
    with reported_errors():
        settings = load_settings(config=config)
    typer.echo(describe_settings(settings))


@config_app.command(
    "path",
    help="Print the path of the config file bgremove reads.\n\n"
    "It is printed whether or not the file exists.\n\n"
    "Example: ${EDITOR:-vi} \"$(bgremove config path)\"",
)
def config_path_command(config: ConfigOption = None) -> None:
    typer.echo(str(config_path(config)[0]))


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


def main() -> None:
    try:
        # The name is fixed so that `python -m bgremove` shows and completes as `bgremove`.
        app(prog_name="bgremove")
    except KeyboardInterrupt:
        typer.echo("bgremove: interrupted", err=True)
        sys.exit(130)
    except ImportError as exc:
        # Ctrl-C while onnxruntime initialises surfaces as an ImportError around it.
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        typer.echo("bgremove: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout has gone (`bgremove --json ... | head -1`): stop quietly, and
        # point stdout at /dev/null so Python's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


# Sub-commands
from bgremove.commands import server as _server_commands  # noqa: E402

_server_commands.register(app)
from bgremove.commands.models import models_app  # noqa: E402

app.add_typer(models_app, name="models")
from bgremove.commands import frames as _frames_command  # noqa: E402

_frames_command.register(app)
