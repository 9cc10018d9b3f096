"""The library's entry points: `remove()` for one image, `new_session()` for a model to reuse, and
`remove_batch()` for files and folders. The CLI and the server are built on these."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, overload

from bgremove.backends import ImageInput, Session
from bgremove.options import RemovalOptions

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from bgremove.backends.local import LocalSession
    from bgremove.outcomes import Progress, Summary
    from bgremove.plan import Shard

_default: LocalSession | None = None
_default_lock = threading.Lock()


def new_session(model: str | None = None, *, device: str = "auto",
                threads: int | None = None, precision: str = "auto",
                model_type: str | None = None) -> LocalSession:
    """Load a model to remove backgrounds with, on this machine; reuse it for every image.

    `model`: a name from `bgremove models list` or a path to an .onnx file (default: the bundled
    u2netp, which works offline). `device`: `auto` (a GPU when one is usable, else the CPU),
    `cpu`, `cuda`, `cuda:1`, ... `threads`: onnxruntime threads per image (default: all cores).
    `precision`: `fp32`, `int8` (the bundled model quantised) or `auto` (int8 only where this CPU
    makes it faster; bgremove/precision.py). `model_type`: the architecture of a model file of
    your own, `u2net`, `isnet`, `birefnet` or `ben`, which says how it is fed and read (default:
    told from its graph; where the graph does not tell, the file is refused with a
    ModelUnavailable naming `model_type`). The session is safe to share between threads;
    `close()` it, or use it in a `with` block.
    """
    from bgremove.backends.local import LocalSession

    return LocalSession(model, device=device, threads=threads, precision=precision,
                        model_type=model_type)


def open_local(model: str | None = None, *, device: str = "auto", workers: int | None = None,
               threads: int | None = None, mode: str = "balanced",
               images: int | None = None, precision: str = "auto",
               model_type: str | None = None) -> tuple[LocalSession, int]:
    """A session of `model` on `device`, sized for this machine, and how many images to keep in
    flight on it: `workers` and `threads` where given, the rest planned (parallel.plan_local)
    for `mode` and, when known, the number of `images`. The one place that sizes a local
    session: the CLI, `remove_batch`, the server and the cluster's workers open theirs here."""
    from bgremove.parallel import plan_local

    workers, threads = plan_local(workers, threads, device=device, mode=mode, images=images)
    return new_session(model, device=device, threads=threads, precision=precision,
                       model_type=model_type), workers


def _default_session() -> LocalSession:
    global _default
    with _default_lock:
        if _default is None:  # sized for one image at a time
            _default = open_local(workers=1)[0]
        return _default


@overload
def remove(image: bytes | bytearray | memoryview | str | os.PathLike[str],
           options: RemovalOptions | None = None, *, session: Session | None = None,
           **overrides: Any) -> bytes: ...
@overload
def remove(image: Image.Image | np.ndarray, options: RemovalOptions | None = None, *,
           session: Session | None = None, **overrides: Any) -> Image.Image: ...
def remove(image: ImageInput, options: RemovalOptions | None = None, *,
           session: Session | None = None, **overrides: Any) -> bytes | Image.Image:
    """Remove the background of one image.

    `image` is encoded bytes, a file path, a PIL image or a numpy array (H x W x 3 or 4, uint8).
    The return type follows it: bytes or a path give the encoded cut-out as bytes (WebP by
    default, `output_format="png"` or `"jpeg"`); a PIL image or an array gives a PIL image, RGBA
    (RGB when the background is filled).

    `options`: a `RemovalOptions` (default: the Background Removal API's defaults); keywords
    change single options, as `RemovalOptions.build` takes them: `mode` fast | balanced |
    quality, `include_mask` (transparent background; None: transparent unless a
    `background_color` is given or the format is JPEG), `smooth_edges`, `preserve_shadows`,
    `background_color` ("#rrggbb", a name, or an RGB tuple), `output_format`, and `max_size`,
    which shrinks larger photos to that many pixels on their longer side first; `only_mask`
    gives the matte alone (the alpha the cut-out would carry) as a greyscale image (L), in any
    format, JPEG too. Product photos: `crop=True`, `margin="6%"` (or pixels),
    `canvas="1200x1200"` (or a shape, "1:1"), `position="bottom"`, `enlarge=False`,
    `background_image=PATH` (README, "Product photos"). A photo's colour profile is carried into
    the output (a PIL image gets it in `info["icc_profile"]`). `session`: a
    `new_session()` or a `RemoteSession` (default: the bundled model, loaded on first use and
    kept).
    """
    session = session or _default_session()
    return session.remove(image, options, **overrides)


def remove_batch(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    options: RemovalOptions | None = None,
    session: Session | None = None,
    listed: Iterable[str] | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
    keep_unstamped: bool = False,
    prune: bool = False,
    dry_run: bool = False,
    check: bool = False,
    workers: int | None = None,
    max_credits: int | None = None,
    on_progress: Progress | None = None,
) -> Summary:
    """Remove the backgrounds of files and folders, as `bgremove INPUT... -o OUTPUT` does.

    Folders are walked recursively and mirrored under `output`; outputs that are up to date
    (their stamp says they were made from the same input, options and model) are kept, the rest
    made (all of them with `overwrite`; `keep_unstamped` keeps outputs that carry no stamp); every
    output is written atomically; `prune` then removes the stamped outputs whose input is gone.
    `dry_run` makes nothing and says what would be done; `check` is a dry run whose summary is
    `failed` when an output is missing or stale (or, with `prune`, orphaned). A file that fails
    is counted and the rest go on: the returned `Summary` has the counts, the failures, and
    `failed`, whether anything failed. `on_progress(outcome, summary)` is called after each input.
    `session`: default, the bundled model sized for this machine. See `Batch` for stopping a
    batch from outside.
    """
    from bgremove.batch import Batch

    batch = Batch(inputs, output, options=options, listed=listed, shard=shard,
                  overwrite=overwrite, keep_unstamped=keep_unstamped, dry_run=dry_run,
                  check=check, prune=prune, max_credits=max_credits,
                  remote=session is not None and session.kind == "remote")
    if session is not None or batch.dry_run:
        return batch.run(session, workers=workers, on_progress=on_progress)
    own, workers = open_local(workers=workers, mode=batch.options.mode.value,
                              images=batch.known_count)
    with own:
        return batch.run(own, workers=workers, on_progress=on_progress)
