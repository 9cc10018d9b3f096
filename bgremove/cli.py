"""The command line: parse arguments into options, call the engine, map errors to exit codes.

Heavy modules (numpy, onnxruntime, Pillow's codecs, the server) are imported inside the commands
that need them, so `bgremove --help` and `bgremove --version` start in a blink.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup

from bgremove import __version__
from bgremove.errors import BgRemoveError, UsageError
from bgremove.options import Mode, OutputFormat, RemovalOptions, parse_color

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class DefaultCommandGroup(TyperGroup):
    """`bgremove in/ -o out/` means `bgremove remove in/ -o out/`: anything that is not a
    sub-command name (or a top-level flag) is handed to the default command."""

    default_command = "remove"
    top_level_flags = {"--help", "-h", "--version", "--install-completion", "--show-completion"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in self.top_level_flags:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


@app.command(
    "remove",
    help="Remove the background of images: files, folders (walked recursively) or - for stdin.\n\n"
    "Example: bgremove photos/ -o cutouts/ --format png",
)
def remove(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders, or - for stdin.", metavar="INPUT...",
                                                show_default=False)],
    output: Annotated[Optional[str], typer.Option(
        "-o", "--output", metavar="PATH", help="Output folder (mirrors input sub-folders), or a file for one "
        "input, or - for stdout.")] = None,
    mode: Annotated[Mode, typer.Option(help="fast | balanced | quality.")] = Mode.balanced,
    output_format: Annotated[Optional[OutputFormat], typer.Option(
        "--format", "-f", help="png | webp [default: webp, or the -o file's extension]",
        show_default=False)] = None,
    include_mask: Annotated[bool, typer.Option(
        help="Transparent background (RGBA); off: background filled with --background-color."
    )] = True,
    smooth_edges: Annotated[bool, typer.Option(
        help="Anti-aliased soft edges; off: hard edges, each pixel fully in or out.")] = True,
    preserve_shadows: Annotated[bool, typer.Option(
        help="Keep the subject's cast shadow as a soft semi-transparent layer.")] = False,
    background_color: Annotated[str, typer.Option(
        help="Fill colour when --no-include-mask: #rrggbb or a name.")] = "white",
    model: Annotated[Optional[str], typer.Option(
        help="Model name (see `bgremove models list`) or path to an .onnx file.",
        show_default="u2netp, bundled")] = None,
    device: Annotated[str, typer.Option(
        help="Where the model runs: auto | cpu | cuda | rocm | directml | coreml | openvino | "
        "tensorrt (onnxruntime execution providers; auto: the best installed accelerator, "
        "else cpu).")] = "auto",
    workers: Annotated[Optional[int], typer.Option(
        help="Images processed at once.", show_default="2", min=1)] = None,
    threads: Annotated[Optional[int], typer.Option(
        help="onnxruntime threads per inference.", show_default="all cores", min=1)] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Redo outputs that already exist (by default they are skipped).")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only report failures.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List every file.")] = False,
) -> None:
    try:
        fmt = output_format or _format_from_output(output) or OutputFormat.webp
        try:
            colour = parse_color(background_color)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        options = RemovalOptions(mode, fmt, include_mask, smooth_edges, preserve_shadows, colour)

        from bgremove.discover import plan as make_plan
        from bgremove.engine import Engine
        from bgremove.progress import ConsoleReporter

        plan = make_plan(inputs, output, fmt)
        from bgremove.backends.local import LocalBackend
        from bgremove.commands.models import announce

        backend = LocalBackend(model, threads, device)
        announce(backend, model, mode.value, quiet=quiet, verbose=verbose)
        reporter = ConsoleReporter(quiet=quiet, verbose=verbose)
        engine = Engine(backend, options, reporter, workers=workers or 2, overwrite=overwrite)
        try:
            summary = engine.run(plan)
        finally:
            backend.close()
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BgRemoveError as exc:
        _fail(str(exc), EXIT_FAILED)
    raise typer.Exit(summary.exit_code)


def _format_from_output(output: str | None) -> OutputFormat | None:
    suffix = Path(output).suffix.lower().lstrip(".") if output and output != "-" else ""
    return OutputFormat(suffix) if suffix in OutputFormat._value2member_map_ else None


def _fail(message: str, code: int) -> None:
    typer.echo(f"bgremove: error: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


# Sub-commands
from bgremove.commands.models import models_app  # noqa: E402

app.add_typer(models_app, name="models")
