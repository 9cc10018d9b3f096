"""`bgremove frames WIDTH HEIGHT`: raw video frames on stdin, cut-outs out (bgremove/frames.py).

numpy, Pillow and onnxruntime are imported inside the command, so `--help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bgremove.commands import reported_errors
from bgremove.config import DEFAULTS, SETTING_NAMES
from bgremove.config import load as load_settings
from bgremove.errors import UsageError
from bgremove.options import Mode


def frames(
    ctx: typer.Context,
    width: Annotated[int, typer.Argument(help="Frame width in pixels.", show_default=False)],
    height: Annotated[int, typer.Argument(help="Frame height in pixels.", show_default=False)],
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="PATTERN", help="Write numbered files instead of stdout, e.g. "
        "'out/%05d.png' (.png, .webp or .jpg; numbered from 1).", show_default=False)] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Write raw frames instead of PNGs: rgba (gray with --only-mask, rgb24 "
        "with --background-color), for ffmpeg -f rawvideo.")] = False,
    mode: Annotated[Mode, typer.Option(help="fast | balanced | quality.",
                                       case_sensitive=False)] = DEFAULTS.mode,
    only_mask: Annotated[bool, typer.Option(
        "--only-mask", "-om", help="Write the matte (greyscale), not the cut-out.")] = False,
    smooth_edges: Annotated[bool, typer.Option(
        help="Anti-aliased soft edges; off: hard edges.")] = DEFAULTS.smooth_edges,
    preserve_shadows: Annotated[bool, typer.Option(
        help="Keep the subject's cast shadow as a soft layer.")] = DEFAULTS.preserve_shadows,
    background_color: Annotated[str, typer.Option(
        metavar="COLOUR", help="Fill the background with this colour (#rrggbb or a name).",
    )] = DEFAULTS.background_color,
    model: Annotated[str | None, typer.Option(
        metavar="NAME|PATH", help="Model name (see `bgremove models list`) or an .onnx file.",
        show_default="u2netp, bundled")] = None,
    # issue 37: how a model file of your own is fed (models/architectures.py)
    model_type: Annotated[str | None, typer.Option(
        metavar="u2net|isnet|birefnet|ben", help="The architecture of a model file of your own, "
        "which says how it is fed and read.", show_default="told from its graph")] = None,
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="Where the model runs: auto | cpu | cuda | ...",
        show_default="auto")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N", help="Frames processed at once.", show_default="one per core", min=1,
    )] = None,
    threads: Annotated[int | None, typer.Option(
        metavar="N", help="onnxruntime threads per frame.", show_default="cores / workers",
        min=1)] = None,
    config: Annotated[str | None, typer.Option(
        "--config", metavar="FILE", show_default=False, help="Settings file to read.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet",
                                        help="No summary line at the end.")] = False,
) -> None:
    from bgremove import frames as video

    with reported_errors():
        video.check_size(width, height)
        sink = video.FrameSink(sys.stdout.buffer if output is None else None, output, raw)
        if output is not None:
            if raw:
                raise UsageError("--raw writes a stream to stdout; -o writes numbered image "
                                 "files: give one of them")
            video.FrameSink.check_pattern(output)
        elif sys.stdout.isatty():
            raise UsageError("stdout is a terminal: pipe the frames on (| ffmpeg ...) or write "
                             "files (-o 'out/%05d.png')")
        if sys.stdin.isatty():
            raise UsageError("stdin is a terminal: pipe raw rgb24 frames in "
                             "(ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - | bgremove frames "
                             "W H ...)")
        given = {}
        for param in ctx.command.params:
            source = ctx.get_parameter_source(param.name) if param.name else None
            if param.name in SETTING_NAMES and source is not None and (
                    source.name == "COMMANDLINE"):
                given[param.name] = ctx.params[param.name]
        given["output_format"] = sink.output_format  # JPEG files: on a background colour
        settings = load_settings(given, config=config)
        summary = _run(video, settings, sink, width, height)
    if not quiet:
        from bgremove.frames import frames_text

        typer.echo(f"bgremove: {frames_text(summary.frames)} of {width}x{height} in "
                   f"{summary.seconds:.1f} s ({summary.rate:.2f} frames/s)", err=True)


def _run(video, settings, sink, width: int, height: int):
    import bgremove
    from bgremove.devices import place
    from bgremove.parallel import plan

    options = settings.removal_options()
    accelerator = place(settings.device).accelerator is not None
    workers, threads = plan(settings.workers, settings.threads, accelerator=accelerator,
                            mode=options.mode.value)
    # A closed stdout (| head) raises BrokenPipeError out of here: cli.main ends quietly.
    with bgremove.new_session(settings.model, device=settings.device, threads=threads,
                              model_type=settings.model_type) as session:
        return video.run(session, options, sys.stdin.buffer, width, height, sink,
                         workers=workers)


def register(app: typer.Typer) -> None:
    app.command(
        "frames",
        help="Remove the background of raw video frames piped in, in order.\n\n"
        "Reads rgb24 frames of WIDTH x HEIGHT on stdin (ffmpeg -f rawvideo -pix_fmt rgb24) and "
        "writes a PNG stream on stdout (ffmpeg -f image2pipe), raw frames with --raw, or "
        "numbered files with -o.\n\n"
        "Example: ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - | bgremove frames 1280 720 "
        "--only-mask | ffmpeg -f image2pipe -i - mask.mp4",
    )(frames)
