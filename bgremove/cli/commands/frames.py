"""`bgremove frames WIDTH HEIGHT`: raw video frames on stdin, cut-outs out (bgremove/frames.py).

numpy, Pillow and onnxruntime are imported inside the command, so `--help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bgremove.cli.commands import reported_errors
from bgremove.cli.params import Given, SectionedCommand, takes_settings
from bgremove.cli.settings import MESSAGES, OUTPUT
from bgremove.errors import UsageError


@takes_settings("mode", "only_mask", "smooth_edges", "preserve_shadows", "background_color",
                "model", "model_type", "device", "precision", "workers", "threads")
def frames(
    given: Given,
    width: Annotated[int, typer.Argument(help="Frame width in pixels.", show_default=False)],
    height: Annotated[int, typer.Argument(help="Frame height in pixels.", show_default=False)],
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="PATTERN", help="Write numbered files instead of stdout, e.g. "
        "'out/%05d.png' (.png, .webp or .jpg; numbered from 1).", show_default=False,
        rich_help_panel=OUTPUT)] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Write raw frames instead of PNGs: rgba (gray with --only-mask, rgb24 "
        "with --background-color), for ffmpeg -f rawvideo.", rich_help_panel=OUTPUT)] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No summary line at the end.",
                                        rich_help_panel=MESSAGES)] = False,
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
        # JPEG files: on a background colour.
        settings = given.load(output_format=sink.output_format)
        summary = _run(video, settings, sink, width, height)
    if not quiet:
        from bgremove.frames import frames_text

        typer.echo(f"bgremove: {frames_text(summary.frames)} of {width}x{height} in "
                   f"{summary.seconds:.1f} s ({summary.rate:.2f} frames/s)", err=True)


def _run(video, settings, sink, width: int, height: int):
    from bgremove.api import open_local

    options = settings.removal_options()
    session, workers = open_local(settings.model, device=settings.device,
                                  workers=settings.workers, threads=settings.threads,
                                  mode=options.mode.value, precision=settings.precision,
                                  model_type=settings.model_type)
    # A closed stdout (| head) raises BrokenPipeError out of here: cli.main ends quietly.
    with session:
        return video.run(session, options, sys.stdin.buffer, width, height, sink,
                         workers=workers)


def register(app: typer.Typer) -> None:
    app.command(
        "frames",
        cls=SectionedCommand,
        help="Remove the background of raw video frames piped in, in order.\n\n"
        "Reads rgb24 frames of WIDTH x HEIGHT on stdin (ffmpeg -f rawvideo -pix_fmt rgb24) and "
        "writes a PNG stream on stdout (ffmpeg -f image2pipe), raw frames with --raw, or "
        "numbered files with -o.\n\n"
        "Example: ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - | bgremove frames 1280 720 "
        "--only-mask | ffmpeg -f image2pipe -i - mask.mp4",
    )(frames)
