"""Video frames through a pipe: raw rgb24 frames in (what `ffmpeg -f rawvideo -pix_fmt rgb24
pipe:1` writes), one cut-out (or matte) per frame out, in input order.

Frames are processed on a pool of threads, as a batch's images are (executors.py): several are in
flight while the next ones are read, and the oldest is written as soon as it is done, so the
output keeps the input's order. At most `2 x workers` frames are held at once, whatever the
length of the video.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from bgremove.backends.local import LocalSession
from bgremove.errors import BgRemoveError, Option, UsageError
from bgremove.imaging.compose import encode
from bgremove.imaging.decode import MAX_PIXELS
from bgremove.options import OutputFormat, RemovalOptions


class TruncatedFrame(BgRemoveError):
    """The input ended inside a frame: the frames before it were written (exit code 1)."""


def check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise UsageError(f"a frame of {width}x{height} pixels: WIDTH and HEIGHT must be at "
                         "least 1")
    if width * height > MAX_PIXELS:
        raise UsageError(f"a frame of {width}x{height} pixels is over the size limit of "
                         f"{MAX_PIXELS // 1_000_000} megapixels")


def read_frames(stream: BinaryIO, width: int, height: int):
    """The frames of `stream`, each `width x height x 3` bytes, until it ends. A last frame that
    is cut short raises TruncatedFrame (once the frames before it have been taken)."""
    size = width * height * 3
    number = 0
    while True:
        number += 1
        frame = bytearray(size)
        got = 0
        while got < size:  # a pipe gives what it has: fill the frame
            chunk = stream.read(size - got)
            if not chunk:
                break
            frame[got:got + len(chunk)] = chunk
            got += len(chunk)
        if got == 0:
            return
        if got < size:
            raise TruncatedFrame(f"frame {number} is cut short: the input ended after {got} of "
                                 f"its {size} bytes ({width}x{height} rgb24); the "
                                 f"{frames_text(number - 1)} before it "
                                 f"{'was' if number == 2 else 'were'} written")
        yield frame


def frames_text(count: int) -> str:
    """`1 frame`, `2 frames`."""
    return f"{count} frame" if count == 1 else f"{count} frames"


@dataclass
class FrameSink:
    """Where each frame's result goes: `raw` pixels or a PNG stream to `stream`, or numbered
    files named by `pattern` (`out/%05d.png`, numbered from 1 as ffmpeg numbers them)."""

    stream: BinaryIO | None = None
    pattern: str | None = None
    raw: bool = False

    @property
    def output_format(self) -> OutputFormat:
        if self.pattern is None:
            return OutputFormat.png
        return OutputFormat.from_suffix(Path(self.pattern).suffix) or OutputFormat.png

    @staticmethod
    def check_pattern(pattern: str) -> None:
        try:
            numbered = pattern % 1 != pattern % 2
        except (TypeError, ValueError):
            numbered = False
        if not numbered:
            raise UsageError(Option("output", pattern), ": name the files with a number "
                             "pattern, such as out/%05d.png")
        if OutputFormat.from_suffix(Path(pattern).suffix) is None:
            raise UsageError(Option("output", pattern), ": end the name with .png, .webp or .jpg")

    def encode(self, image: Image.Image) -> bytes:
        if self.raw:
            return image.tobytes()  # rgba, rgb (a filled background) or gray (the matte)
        return encode(image, self.output_format)

    def write(self, number: int, data: bytes) -> None:
        if self.pattern is not None:
            from bgremove.atomic import write_atomic

            write_atomic(Path(self.pattern % number), data)
            return
        assert self.stream is not None  # no pattern: a stream
        self.stream.write(data)
        self.stream.flush()


@dataclass
class FramesSummary:
    frames: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run(session: LocalSession, options: RemovalOptions, stream: BinaryIO, width: int,
        height: int, sink: FrameSink, *, workers: int,
        on_frame: Callable[[FramesSummary], None] | None = None) -> FramesSummary:
    """Read the frames of `stream`, process them with `session` on `workers` threads and hand
    each result to `sink`, in order. A TruncatedFrame is raised once every frame before it has
    been written."""
    summary = FramesSummary()
    started = time.perf_counter()
    capacity = workers * 2  # enough to keep every worker busy while the oldest is written
    pending: deque[Future[bytes]] = deque()

    def process(frame: bytearray) -> bytes:
        rgb = np.frombuffer(frame, np.uint8).reshape(height, width, 3)
        return sink.encode(session.remove_image(Image.fromarray(rgb, "RGB"), options))

    pool = ThreadPoolExecutor(workers, thread_name_prefix="bgremove-frame")
    frames = read_frames(stream, width, height)
    error: TruncatedFrame | None = None
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < capacity:
                try:
                    frame = next(frames, None)
                except TruncatedFrame as exc:
                    error, frame = exc, None
                if frame is None:
                    exhausted = True
                    break
                pending.append(pool.submit(process, frame))
            if not pending:
                break
            data = pending.popleft().result()
            summary.frames += 1
            sink.write(summary.frames, data)
            summary.seconds = time.perf_counter() - started
            if on_frame is not None:
                on_frame(summary)
    finally:
        # Stopped early (a closed stdout, Ctrl-C): frames not started are dropped.
        pool.shutdown(wait=False, cancel_futures=True)
        summary.seconds = time.perf_counter() - started
    if error is not None:
        raise error
    return summary
