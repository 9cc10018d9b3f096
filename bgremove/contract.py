"""The Background Removal API's contract (background-removal-api.txt), in one place: the client
(backends/remote.py) refuses what the server (server/credits.py) would refuse, by the same numbers.

Imported by `bgremove --help` (through the settings): it must stay free of heavy imports.
"""

from io import BytesIO
from typing import IO

from bgremove.errors import ImageError, Part

DEFAULT_API_URL = "https://api.versatool.ai/api/remove-background/"

# Accepted images, by the format their content shows, and the type each is sent as.
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_SIDE = 4000
# Requests per key in any RATE_WINDOW seconds.
RATE_LIMIT = 100
RATE_WINDOW = 60.0


def check_upload(data: bytes, advice: tuple[Part, ...] = ()) -> str:
    """Refuse what the API refuses, from the bytes and the image header alone (nothing is
    decoded); return the format's name ("jpeg", "png" or "webp").

    The client runs it before spending a credit and the server before reserving one, so both
    refuse the same files with the same ImageError message. `advice` is added to the messages
    about size (the client names its `max_size` there).
    """
    return check_upload_file(BytesIO(data), len(data), advice)


def check_upload_file(file: IO[bytes], size: int, advice: tuple[Part, ...] = ()) -> str:
    """`check_upload` for a file of `size` bytes, read from its start: only its header is read
    (a dry run judges files this way without reading them whole)."""
    # Imported here: this module is read by `bgremove --help`, which must not load Pillow.
    from bgremove.imaging.decode import SNIFF_BYTES, open_image, sniff

    more: tuple[Part, ...] = (" (", *advice, ")") if advice else ()
    if not size:
        raise ImageError("the file is empty")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"file too large: {size / 2**20:.1f} MB, the limit is "
                         f"{MAX_FILE_BYTES // 2**20} MB", *more)
    kind = sniff(file.read(SNIFF_BYTES))
    file.seek(0)
    unsupported = (f"unsupported file type{f' ({kind.upper()})' if kind else ''}: the API takes "
                   "JPEG, PNG or WebP images")
    try:
        image = open_image(file)  # the header only
    except ImageError:
        if kind not in CONTENT_TYPES:
            raise ImageError(unsupported) from None
        raise
    width, height = image.size
    image.close()
    # The size before the type: a photo in another format is converted by the client, but only
    # once it fits.
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageError(f"image too large: {width}x{height} pixels, the limit is "
                         f"{MAX_SIDE}x{MAX_SIDE}", *more)
    if kind not in CONTENT_TYPES:
        raise ImageError(unsupported)
    return kind
