"""Sessions: a loaded model (local.py) or an API client (remote.py) behind one interface.

One word for one thing: the `backend` setting (`--backend local|remote`) chooses where images are
processed; what it opens, and what every caller holds, is a `Session` (rembg's word for a loaded
model). The package keeps the setting's name.

Each turns image bytes and `RemovalOptions` into the encoded cut-out (`process`, what the batch
engine and the server call), and any image into a cut-out (`remove`, what Python users call).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bgremove.errors import FileFailed
from bgremove.options import RemovalOptions

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Result:
    """One processed image, with what the API told us about it (remote sessions only)."""

    data: bytes
    credits_spent: int = 0
    credits_remaining: int | None = None
    request_id: str | None = None


ImageInput = Any  # bytes | str | os.PathLike | PIL.Image.Image | numpy.ndarray


@runtime_checkable
class Session(Protocol):
    """Everything the batch engine and the server need. Every method is safe to call from many
    threads at once."""

    # Read-only to callers (properties here), plain attributes in the sessions.
    @property
    def kind(self) -> str:
        """"local" or "remote"."""

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers the model runs on, best first (empty for a remote
        session)."""

    @property
    def device_warning(self) -> str | None:
        """What to tell the user about how the model runs: an accelerator was asked for but is
        not used, or the int8 build failed its check and fp32 runs instead."""

    @property
    def model_id(self) -> str:
        """What made the outputs, as their stamps name it (stamps.local_model_id,
        remote_model_id)."""

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        """The encoded cut-out of encoded image bytes. Raises FileFailed (this image) or
        StopBatch (nothing more can succeed: a bad key, no credits, the API unreachable)."""
        ...

    def remove(self, image: ImageInput, options: RemovalOptions | None = None,
               **overrides: Any) -> bytes | Image.Image: ...

    def cancel(self) -> None:
        """Give up on work not yet started (Ctrl-C): requests waiting to be sent are not sent."""
        ...

    def close(self) -> None: ...


class SessionBase:
    """`remove()` for every session, in terms of `process()` and `remove_image()`."""

    def remove(self, image: ImageInput, options: RemovalOptions | None = None,
               **overrides: Any) -> bytes | Image.Image:
        """Remove the background of one image, as `bgremove.remove()` does (the same options,
        the same rule for the return type), with this session."""
        options = RemovalOptions.of(options, **overrides)
        if isinstance(image, (bytes, bytearray, memoryview)):
            return self.process(bytes(image), options).data
        if isinstance(image, (str, os.PathLike)):
            try:
                data = Path(image).read_bytes()
            except OSError as exc:
                raise FileFailed(f"{image}: cannot read: {exc.strerror or exc}") from None
            return self.process(data, options).data
        return self.remove_image(as_pil(image), options)

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        raise NotImplementedError

    def remove_image(self, image: Image.Image, options: RemovalOptions) -> Image.Image:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        pass


def as_pil(image: Any) -> Image.Image:
    """A PIL image from a PIL image or a numpy array (H x W, H x W x 3 or H x W x 4, uint8)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    import numpy as np

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
                image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise TypeError("expected a uint8 array of H x W, H x W x 3 (RGB) or H x W x 4 (RGBA),"
                            f" not {image.dtype} {image.shape}")
        return Image.fromarray(np.ascontiguousarray(image))
    raise TypeError(f"expected image bytes, a path, a PIL image or a numpy array, "
                    f"not {type(image).__name__}")
