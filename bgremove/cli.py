"""The command line: parse arguments into options, call the engine, map errors to exit codes.

Heavy modules (numpy, onnxruntime, Pillow's codecs, the server) are imported inside the commands
that need them, so `bgremove --help` and `bgremove --version` start in a blink.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import click
import typer
from typer.core import TyperGroup

from bgremove import __version__
from bgremove.errors import BgRemoveError, UsageError
from bgremove.options import Mode, OutputFormat, RemovalOptions, parse_color

if TYPE_CHECKING:
    from bgremove.backends import Backend

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class BackendName(str, Enum):
    local = "local"
    remote = "remote"


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
    workers: Annotated[Optional[int], typer.Option(
        help="Images processed at once.", show_default="2 local, 8 remote", min=1)] = None,
    threads: Annotated[Optional[int], typer.Option(
        help="onnxruntime threads per inference.", show_default="all cores", min=1)] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Redo outputs that already exist (by default they are skipped).")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only report failures.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List every file.")] = False,
    backend_name: Annotated[BackendName, typer.Option(
        "--backend", help="local: the model on this machine; remote: the Background Removal API.")
    ] = BackendName.local,
    api_url: Annotated[Optional[str], typer.Option(
        help="API endpoint (remote backend), e.g. a `bgremove serve`. Also: BGREMOVE_API_URL.",
        show_default="https://api.versatool.ai/api/remove-background/")] = None,
    api_key: Annotated[Optional[str], typer.Option(
        help="API key (remote backend). Prefer --api-key-file or BGREMOVE_API_KEY: a command "
        "line is visible to other users of the machine.", show_default=False)] = None,
    api_key_file: Annotated[Optional[Path], typer.Option(
        help="File holding the API key.", show_default=False)] = None,
    rate_limit: Annotated[Optional[int], typer.Option(
        help="Requests started per --rate-window at most (remote backend).", show_default="100",
        min=1)] = None,
    rate_window: Annotated[Optional[float], typer.Option(
        help="Seconds the --rate-limit applies to.", show_default="60", min=0.001)] = None,
    max_credits: Annotated[Optional[int], typer.Option(
        help="Stop once this many credits are spent (remote backend).", show_default=False,
        min=1)] = None,
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
        remote = backend_name is BackendName.remote
        backend = _make_backend(backend_name, model=model, threads=threads, api_url=api_url,
                                api_key=api_key, api_key_file=api_key_file, rate_limit=rate_limit,
                                rate_window=rate_window, max_credits=max_credits)
        reporter = ConsoleReporter(quiet=quiet, verbose=verbose, credits=remote)
        # Remote requests wait on the network, not the CPU: more of them overlap.
        engine = Engine(backend, options, reporter, workers=workers or (8 if remote else 2),
                        overwrite=overwrite, max_credits=max_credits)
        try:
            summary = engine.run(plan)
        finally:
            backend.close()
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BgRemoveError as exc:
        _fail(str(exc), EXIT_FAILED)
    raise typer.Exit(summary.exit_code)


def _make_backend(name: BackendName, *, model: str | None, threads: int | None,
                  api_url: str | None, api_key: str | None, api_key_file: Path | None,
                  rate_limit: int | None, rate_window: float | None,
                  max_credits: int | None) -> Backend:
    """Build the backend `--backend` names, refusing options that mean nothing to it."""
    if name is BackendName.local:
        remote_only = {"--api-url": api_url, "--rate-limit": rate_limit,
                       "--rate-window": rate_window, "--max-credits": max_credits}
        named = [flag for flag, value in remote_only.items() if value is not None]
        if named:
            raise UsageError(f"{', '.join(named)}: only for --backend remote")
        from bgremove.backends.local import LocalBackend

        return LocalBackend(model, threads)
    if model is not None or threads is not None:
        raise UsageError("--model and --threads are for --backend local; the API picks its model")
    from bgremove.apikey import resolve_api_key
    from bgremove.backends import remote

    key = resolve_api_key(api_key, api_key_file)
    if key is None:
        raise UsageError("--backend remote needs an API key: --api-key-file FILE, the "
                         "BGREMOVE_API_KEY environment variable, or --api-key KEY")
    return remote.RemoteBackend(
        api_url or os.environ.get(remote.ENV_API_URL) or remote.DEFAULT_API_URL, key,
        rate_limit=rate_limit or remote.DEFAULT_RATE_LIMIT,
        rate_window=rate_window or remote.DEFAULT_RATE_WINDOW,
    )


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
