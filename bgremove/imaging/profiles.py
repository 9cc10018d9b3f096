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


_PNG_COLOUR_CHUNKS = (b"iCCP", b"sRGB", b"gAMA", b"cHRM")  # what the profile replaces
_VP8X_ICC = 0x20


def tag(data: bytes, profile: bytes) -> bytes:
    """Encoded PNG or WebP `data` tagged with `profile`, its image data untouched (no re-encode):
    for an API's answer, made from the photo's pixels, that came back without the photo's
    profile. Other data is returned as it is."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return _png_tag(data, profile)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_tag(data, profile)
    return data


def _png_tag(data: bytes, profile: bytes) -> bytes:
    from bgremove.imaging.png import chunk

    pos, parts = 8, []
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4:pos + 8] not in _PNG_COLOUR_CHUNKS:
            parts.append(data[pos:end])
        pos = end
    return data[:8] + parts[0] + chunk(b"iCCP", iccp_body(profile)) + b"".join(parts[1:])


def _webp_tag(data: bytes, profile: bytes) -> bytes:
    from bgremove.stamps import riff_chunks, webp_canvas

    chunks = [c for c in riff_chunks(data) if c[0] != b"ICCP"]
    kind, body = chunks[0]
    if kind == b"VP8X":
        chunks[0] = (kind, bytes([body[0] | _VP8X_ICC]) + body[1:])
    else:
        width, height, alpha = webp_canvas(kind, body)
        flags = _VP8X_ICC | (0x10 if alpha else 0)
        chunks.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
                          + (height - 1).to_bytes(3, "little")))
    chunks.insert(1, (b"ICCP", profile))  # the spec's place: right after VP8X
    body = b"WEBP" + b"".join(
        kind + len(part).to_bytes(4, "little") + part + b"\0" * (len(part) & 1)
        for kind, part in chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body
