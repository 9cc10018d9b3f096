"""Up-to-date stamps: each output carries what it was made from, so a re-run redoes exactly the
outputs whose input, options or model changed, and `--check` can tell a CI job which are stale.

The stamp is a short JSON text inside the output itself (a PNG `tEXt` chunk right after the
header, a WebP XMP chunk, a JPEG comment right after the header), so no side file can drift from
the outputs, a copied or renamed output keeps its stamp, and reading it back takes the first
bytes of the file (plus a few seeks past a WebP's image data), never a decode:

    {"bgremove": 1, "model": "sha256:434c...", "options": {"mode": "fast", ...},
     "input": {"sha256": "9f86...", "size": 48211, "mtime_ns": 1764780000000000000}}

An output is up to date when its stamp has this pipeline version, this model, these options and
this input, and the file is whole: it ends as its format ends (PNG's IEND chunk, JPEG's EOI
marker, WebP's RIFF size), so an output cut short after its stamp (the stamp of a PNG or JPEG is
in its first bytes) is made again, never kept. atomic.py fsyncs each output before it gets its
name; this check holds whatever else cut a file short. The input is compared by size and
modification time first (a `stat`, no read); only when the time differs is the content hashed,
and the hash decides (a fresh checkout or a copy touches every file without changing one). An
output without a stamp (written by hand, or by a bgremove before stamps) is redone unless the
batch keeps unstamped outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape, unescape

from bgremove.layout import Backdrop, Canvas, Margin
from bgremove.options import RemovalOptions

# The pipeline's version: bumped when a change to bgremove makes other pixels from the same
# input, options and model, so that outputs made before it are redone ("bgremove changed").
# Releases that leave outputs as they were keep it, and their users' outputs stay up to date.
PIPELINE = 1
# Modes whose local pixels changed since PIPELINE was last bumped: their stamps carry PIPELINE
# plus this, so that only their outputs are redone (0.4: quality's matting stage). An output of
# --backend remote keeps PIPELINE: its pixels are the API's, and redoing it would cost credits.
MODE_REVISIONS = {"quality": 1}
# Not bumped for issue 34's fast and balanced alpha made in 8 bits (matte.cutout_alpha): a pixel
# moves by two levels at most, less than the int8 build that `auto` now runs moves it, and by
# the same rule (README "Usage") neither redoes a catalogue.

# Why an output is (re)made or kept: the reasons a summary counts and --json carries.
NEW = "new"  # there is no output yet
OVERWRITE = "overwrite"  # redone because the batch redoes everything
UNSTAMPED = "no stamp"  # an output bgremove did not stamp: redone
KEPT_UNSTAMPED = "no stamp, kept"  # ... or kept, when the batch keeps unstamped outputs
PIPELINE_CHANGED = "bgremove changed"
MODEL_CHANGED = "model changed"
OPTIONS_CHANGED = "options changed"
INPUT_CHANGED = "input changed"
FROM_STDIN = "stdin"  # an image piped in cannot be compared: always made
INPUT_GONE = "input gone"  # a stamped output that no input of the run makes: pruned
INCOMPLETE = "incomplete"  # its end is missing (a power cut while it was written): redone
UP_TO_DATE = "up to date"

_KEYWORD = b"bgremove"  # the PNG tEXt keyword, and the JPEG comment's first word
_XMP_NS = "urn:bgremove:stamp:1"
_XMP_STAMP = re.compile(rb'bgremove:stamp="([^"]*)"')


# -- what an output is made from ------------------------------------------------------------------

def options_key(options: RemovalOptions) -> dict[str, object]:
    """The options as a stamp records them: every field of `RemovalOptions` (so a new option can
    never be missed), leaving out the ones that do not change the output: unset ones (a new
    option whose unset value is today's behaviour keeps old stamps valid) and the background
    colour of a transparent cut-out."""
    key: dict[str, object] = {}
    for f in fields(options):
        value = getattr(options, f.name)
        if value is None or (f.name == "background_color" and options.include_mask):
            continue
        if f.name == "only_mask" and not value:
            continue  # a cut-out's stamp is as it was before the option existed
        if _moot(options, f.name, value):
            continue
        if isinstance(value, (Margin, Canvas)):
            value = str(value)
        elif isinstance(value, Backdrop):
            value = f"sha256:{value.sha256}"  # its picture, wherever the file is
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        key[f.name] = value
    return key


def _moot(options: RemovalOptions, name: str, value: object) -> bool:
    """The product-photo options left out where they change nothing: unset (so outputs made
    before they existed stay up to date), or a placement with nothing placed."""
    if name not in _PRODUCT_DEFAULTS:
        return False
    if value == _PRODUCT_DEFAULTS[name]:
        return True
    if name == "margin":
        return not options.crop and options.canvas is None
    return name in ("position", "enlarge") and options.canvas is None


_PRODUCT_DEFAULTS = {name: getattr(RemovalOptions(), name) for name in (
    "crop", "margin", "canvas", "position", "enlarge", "background_image")}


@dataclass(frozen=True)
class Recipe:
    """What an output is made from besides its input: the options, the model, the pipeline.
    One per batch; `stamp()` adds one input to it."""

    options: str  # options_key as canonical JSON (a dataclass field must be hashable)
    model: str
    pipeline: int = PIPELINE
    # Other models whose outputs count as up to date: the bundled model's other build, under
    # --precision auto (precision.interchangeable; README "Usage": outputs that are up to date).
    also: tuple[str, ...] = ()

    @classmethod
    def of(cls, options: RemovalOptions, model: str, also: tuple[str, ...] = ()) -> Recipe:
        pipeline = PIPELINE
        if not model.startswith(REMOTE_MODEL):
            pipeline += MODE_REVISIONS.get(options.mode.value, 0)
        return cls(json.dumps(options_key(options), sort_keys=True), model, pipeline,
                   tuple(m for m in also if m != model))

    def stamp(self, data: bytes, stat: os.stat_result | None) -> str:
        """The stamp of an output made from `data`, read from a file whose `stat` was taken as it
        was opened (None: stdin)."""
        source: dict[str, object] = {"sha256": hashlib.sha256(data).hexdigest()}
        if stat is not None:
            source.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        return json.dumps({"bgremove": self.pipeline, "model": self.model,
                           "options": json.loads(self.options), "input": source},
                          sort_keys=True, separators=(",", ":"))


_model_hashes: dict[tuple[str, int, int], str] = {}
_model_hashes_lock = threading.Lock()


def local_model_id(model: str | None, model_type: str | None = None) -> str:
    """What identifies a local model in a stamp: its content, whatever its file is called. A
    model named from the registry (the bundled one too) by its pinned checksum: no need to read
    170 MB, and the same on every machine of a cluster. Any other file by its SHA-256, and by its
    architecture unless that is U²-Net: the same file fed as another architecture makes other
    pixels, and before bgremove knew architectures every file ran as U²-Net (so a U²-Net file's
    outputs stay up to date, and those of the others are made again, now the right way).
    `model_type`: as given to the session (None: recognised from the graph; a file whose graph
    does not tell is refused here, before anything runs)."""
    from bgremove.models import BUNDLED, KNOWN, resolve
    from bgremove.models.architectures import U2NET, of_model

    name = model or BUNDLED
    if name in KNOWN:
        if model_type is not None:
            of_model(name, None, model_type)  # refuses a type that contradicts the registry
        return KNOWN[name].checksum
    _, path = resolve(model)
    content = f"sha256:{file_sha256(path)}"
    architecture = of_model("custom", path, model_type)
    return content if architecture is U2NET else f"{content} as {architecture.type.value}"


REMOTE_MODEL = "api "


def remote_model_id(api_url: str) -> str:
    """The API chooses its own model: its address stands for it (the key plays no part)."""
    return f"{REMOTE_MODEL}{api_url.rstrip('/')}"


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process for each version of the file."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _model_hashes_lock:
        known = _model_hashes.get(key)
    if known is None:
        known = _hash_file(path)
        with _model_hashes_lock:
            _model_hashes[key] = known
    return known


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)  # hashlib lets go of the GIL on blocks this big
    return digest.hexdigest()


# -- whether an output is up to date --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Verdict:
    fresh: bool  # up to date: keep it
    reason: str


def verdict(source: Path | None, dest: Path, recipe: Recipe, *,
            keep_unstamped: bool = False) -> Verdict:
    """Whether the output `dest` is up to date for `source` made with `recipe`, and why (not)."""
    try:
        text, kind, whole = _inspect(dest)
    except FileNotFoundError:
        return Verdict(False, NEW)
    except OSError:
        return Verdict(False, UNSTAMPED)  # a folder, or unreadable: making it says what is wrong
    if source is None:
        return Verdict(False, FROM_STDIN)
    stamp = _parse(text)
    if stamp is None:
        if kind == "webp" and not whole:
            # A WebP keeps its stamp at its end: one of ours cut short has lost it. Other
            # unstamped files are the user's ("no stamp"), kept with keep_unstamped.
            return Verdict(False, INCOMPLETE)
        return Verdict(keep_unstamped, KEPT_UNSTAMPED if keep_unstamped else UNSTAMPED)
    if not whole:
        return Verdict(False, INCOMPLETE)
    # What the user changed is named before what bgremove did: the pipeline's number depends on
    # the mode, so another mode is "options changed", not "bgremove changed".
    if stamp.get("options") != json.loads(recipe.options):
        return Verdict(False, OPTIONS_CHANGED)
    if stamp.get("model") != recipe.model and stamp.get("model") not in recipe.also:
        return Verdict(False, MODEL_CHANGED)
    if stamp.get("bgremove") != recipe.pipeline:
        return Verdict(False, PIPELINE_CHANGED)
    made_from = stamp.get("input")
    if not isinstance(made_from, dict) or not _same_input(source, made_from):
        return Verdict(False, INPUT_CHANGED)
    return Verdict(True, UP_TO_DATE)


def _parse(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        stamp = json.loads(text)
    except ValueError:
        return None
    return stamp if isinstance(stamp, dict) else None


def _same_input(source: Path, made_from: dict) -> bool:
    """Size and time first; where the time differs, the content decides."""
    try:
        st = os.stat(source)
    except OSError:
        return False  # gone or unreadable: making it says what is wrong
    if st.st_size != made_from.get("size"):
        return False
    if st.st_mtime_ns == made_from.get("mtime_ns"):
        return True
    try:
        return _hash_file(source) == made_from.get("sha256")
    except OSError:
        return False


def orphans(folder: Path, ours: set[str]) -> Iterator[Path]:
    """The outputs under `folder` that carry a stamp (bgremove made them) and are not in `ours`
    (absolute paths of a run's inputs and outputs). Hidden files and folders, and files that are
    not named as an output, are never looked at."""
    from bgremove.options import OutputFormat

    suffixes = OutputFormat.suffixes()
    for top, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            path = Path(top, name)
            if (name.startswith(".") or path.suffix.lower() not in suffixes
                    or os.path.abspath(path) in ours):
                continue
            try:
                if read(path) is not None:
                    yield path
            except OSError:
                continue


# -- writing a stamp into an encoded output -------------------------------------------------------

def embed(data: bytes, text: str) -> bytes:
    """The encoded image `data` (PNG, WebP or JPEG, as any encoder writes them) with the stamp
    `text` in it, and its pixels untouched."""
    payload = text.encode("ascii")
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return _png_embed(data, payload)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_embed(data, payload)
    if data[:2] == b"\xff\xd8":
        return _jpeg_embed(data, payload)
    raise ValueError("cannot stamp: the cut-out is not a PNG, WebP or JPEG")


def read(path: Path) -> str | None:
    """The stamp in the image file at `path`, from its header (None: it has none, or it is no
    PNG, WebP or JPEG). Raises OSError when the file cannot be read (FileNotFoundError: none)."""
    return _inspect(path)[0]


_PNG_END = b"\0\0\0\0IEND\xaeB`\x82"  # the IEND chunk: empty, and its CRC
_JPEG_END = b"\xff\xd9"  # EOI: Pillow's encoder writes nothing after it


def _inspect(path: Path) -> tuple[str | None, str | None, bool]:
    """The file's stamp (as `read`), its kind (png, webp, jpeg; None: none of them), and
    whether it is whole: it ends as its kind ends. One open, and a seek to the end."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_read(f), "png", _ends_with(f, _PNG_END)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            riff_end = 8 + int.from_bytes(head[4:8], "little")
            return _webp_read(f), "webp", os.fstat(f.fileno()).st_size == riff_end
        if head[:2] == b"\xff\xd8":
            return _jpeg_read(f), "jpeg", _ends_with(f, _JPEG_END)
    return None, None, False


def _ends_with(f: BinaryIO, end: bytes) -> bool:
    size = os.fstat(f.fileno()).st_size
    if size < len(end):
        return False
    f.seek(size - len(end))
    return f.read(len(end)) == end


def _decode(payload: bytes) -> str | None:
    try:
        return payload.decode("ascii")
    except UnicodeDecodeError:
        return None


# PNG: a tEXt chunk placed right after IHDR, so the stamp is within the file's first bytes.

def _png_embed(data: bytes, payload: bytes) -> bytes:
    from bgremove.imaging.png import chunk  # numpy with it: only where outputs are written

    end_of_header = 8 + 8 + int.from_bytes(data[8:12], "big") + 4
    return (data[:end_of_header] + chunk(b"tEXt", _KEYWORD + b"\0" + payload)
            + data[end_of_header:])


def _png_read(f) -> str | None:
    f.seek(8)
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind in (b"IDAT", b"IEND"):  # the stamp comes before the image data
            return None
        if kind == b"tEXt" and length < 1 << 16:
            body = f.read(length)
            keyword, _, text = body.partition(b"\0")
            if keyword == _KEYWORD:
                return _decode(text)
            f.seek(4, os.SEEK_CUR)
        else:
            f.seek(length + 4, os.SEEK_CUR)


# WebP: an XMP chunk at the end, where the container's spec puts metadata; a simple-format file
# (one VP8 or VP8L chunk) becomes the extended format (VP8X), which metadata needs.

_VP8X_ALPHA, _VP8X_XMP = 0x10, 0x04


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        chunks.append((kind, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def webp_canvas(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    """(width, height, has alpha) from a simple-format file's bitstream header."""
    if kind == b"VP8L" and body[:1] == b"\x2f":
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    if kind == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(body[6:8], "little") & 0x3FFF
        height = int.from_bytes(body[8:10], "little") & 0x3FFF
        return width, height, False
    raise ValueError("cannot stamp: an unknown kind of WebP")


def _webp_embed(data: bytes, payload: bytes) -> bytes:
    xmp = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           f'02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:bgremove="{_XMP_NS}" '
           f'bgremove:stamp="{escape(payload.decode(), {chr(34): "&quot;"})}"/></rdf:RDF>'
           "</x:xmpmeta>").encode()
    chunks = [c for c in riff_chunks(data) if c[0] != b"XMP "]  # ours replaces any other
    kind, body = chunks[0]
    if kind == b"VP8X":
        chunks[0] = (kind, bytes([body[0] | _VP8X_XMP]) + body[1:])
    else:
        width, height, alpha = webp_canvas(kind, body)
        flags = _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
        chunks.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
                          + (height - 1).to_bytes(3, "little")))
    chunks.append((b"XMP ", xmp))
    body = b"WEBP" + b"".join(
        kind + len(part).to_bytes(4, "little") + part + b"\0" * (len(part) & 1)  # even sizes
        for kind, part in chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _webp_read(f) -> str | None:
    f.seek(12)
    header = f.read(9)
    # Metadata lives only in the extended format, whose first chunk flags it.
    if len(header) < 9 or header[:4] != b"VP8X" or not header[8] & _VP8X_XMP:
        return None
    f.seek(12 + 8 + int.from_bytes(header[4:8], "little"))
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        kind, size = header[:4], int.from_bytes(header[4:], "little")
        if kind == b"XMP " and size < 1 << 20:
            found = _XMP_STAMP.search(f.read(size))
            text = _decode(found[1]) if found else None
            return unescape(text, {"&quot;": '"'}) if text is not None else None
        f.seek(size + (size & 1), os.SEEK_CUR)


# JPEG: a comment segment right after the JFIF header (APP0 must stay first).

def _jpeg_embed(data: bytes, payload: bytes) -> bytes:
    pos = 2
    if data[2:4] == b"\xff\xe0":
        pos = 4 + int.from_bytes(data[4:6], "big")
    body = _KEYWORD + b" " + payload
    return data[:pos] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + data[pos:]


def _jpeg_read(f) -> str | None:
    f.seek(2)
    while True:
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF or marker[1] in (0xDA, 0xD9):
            return None  # the comment comes before the scan
        length = int.from_bytes(marker[2:], "big") - 2
        if length < 0:
            return None  # a broken segment: never step back into it
        if marker[1] == 0xFE:
            body = f.read(length)
            if body.startswith(_KEYWORD + b" "):
                return _decode(body[len(_KEYWORD) + 1:])
        else:
            f.seek(length, os.SEEK_CUR)
