"""Colour profiles: the input's ICC profile travels to the output, so it shows the photo's colours.

Decided by measurement (BENCHMARKS.md, "Colour profiles"): the profile is carried, not converted.
The pixels bgremove writes are the photo's own values, so tagging them with the photo's profile is
exact, costs no pixel work (converting a 12 MP photo to sRGB costs more CPU than encoding it) and
loses nothing: a conversion to sRGB would clip every colour of a Display P3 or Adobe RGB photo that
sRGB cannot show. The price is the profile's bytes in each output (0.5-3 KB for the common RGB
profiles). Every browser and image viewer colour-manages tagged images; untagged ones are taken as
sRGB, as before.

Only profiles of RGB data are carried: the engine writes RGB, so a CMYK or greyscale photo's
profile would describe other data (PNG forbids it, viewers misread it); those outputs stay
untagged, as the photos are converted to RGB without one.
"""

from __future__ import annotations

import functools
import zlib

from PIL import Image

# ICC header: bytes 16-19 name the colour space of the data the profile describes.
_DATA_SPACE = slice(16, 20)
PROFILE_NAME = b"ICC profile"  # the iCCP chunk's profile name (any Latin-1 text; libpng's)


def rgb_profile(image: Image.Image) -> bytes | None:
    """The image's ICC profile when it describes RGB data (else None: untagged, or CMYK/grey)."""
    profile = image.info.get("icc_profile")
    if not isinstance(profile, bytes) or len(profile) < 128 or profile[_DATA_SPACE] != b"RGB ":
        return None
    return profile


@functools.lru_cache(maxsize=16)
def iccp_body(profile: bytes) -> bytes:
    """A PNG iCCP chunk's data: name, NUL, compression method 0 (deflate), the profile deflated.
    Cached: a batch's photos share a handful of profiles."""
    return PROFILE_NAME + b"\0\0" + zlib.compress(profile, 9)
