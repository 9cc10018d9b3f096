"""The server's session: how many images it processes at once by default, the local session
sized for that, and a warm-up so the first request is as fast as the ones after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bgremove.backends import Session
from bgremove.options import RemovalOptions
from bgremove.parallel import plan_local

if TYPE_CHECKING:
    from bgremove.backends.local import LocalSession


def default_workers(device: str = "auto") -> int:
    """Images processed at once by default: the CLI's choice for this machine (parallel.plan: the
    cores, as many as memory holds), sized for quality mode, the costliest a client may ask."""
    return plan_local(None, None, device=device, mode="quality")[0]


def local_session(concurrency: int, model: str | None = None, precision: str = "auto",
                  model_type: str | None = None, *, device: str = "auto",
                  threads: int | None = None) -> LocalSession:
    """The engine, sized for a server processing `concurrency` images at once: the one place the
    server obtains it."""
    from bgremove.api import open_local

    # The cores are split between the images in flight rather than each inference given all of
    # them: a busy server then does not oversubscribe the CPU.
    return open_local(model, device=device, workers=concurrency, threads=threads,
                      precision=precision, model_type=model_type)[0]


def warm_up(session: Session) -> None:
    """Run every mode's code path once, so the first request is as fast as the ones after it.

    Lazy imports (scipy for the refined modes), onnxruntime's first run, and each codec's first use
    would otherwise all land on the first client. Three small images between them decode JPEG,
    PNG and WebP, run the three modes, and encode PNG and WebP, with and without the mask.
    """
    import io

    import numpy as np
    from PIL import Image

    from bgremove.options import Mode, OutputFormat

    y, x = np.mgrid[0:240, 0:320]
    disc = ((x - 160) ** 2 + (y - 120) ** 2 < 80**2)[:, :, None]
    pixels = np.where(disc, [200, 60, 40], [235, 235, 230]).astype(np.uint8)
    runs = [
        ("JPEG", RemovalOptions(mode=Mode.fast, output_format=OutputFormat.png)),
        ("PNG", RemovalOptions(mode=Mode.balanced, output_format=OutputFormat.webp,
                               preserve_shadows=True)),
        ("WEBP", RemovalOptions(mode=Mode.quality, output_format=OutputFormat.png,
                                include_mask=False, smooth_edges=False)),
    ]
    for fmt, options in runs:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt)
        session.process(buffer.getvalue(), options)
