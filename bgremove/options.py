"""The removal options, named and defaulted as the Background Removal API names them.

Every backend and the self-hosted server take the same `RemovalOptions`, so an option means the same
thing wherever an image is processed. This module stays free of heavy imports: the CLI builds one
before anything else is loaded.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, TypeVar

from bgremove.errors import Option, OptionError
from bgremove.layout import (
    Backdrop,
    Canvas,
    Margin,
    load_backdrop,
    margin_room,
    parse_canvas,
    parse_margin,
    parse_position,
)


class Mode(str, Enum):
    """Speed/quality trade-off: each mode is a longer pipeline over the same model."""

    fast = "fast"
    balanced = "balanced"
    quality = "quality"

    @classmethod
    def _missing_(cls, value: object) -> Mode | None:
        if isinstance(value, str) and value.strip().lower() in cls._value2member_map_:
            return cls(value.strip().lower())  # `Quality`, as OutputFormat takes `PNG`
        return None


class OutputFormat(str, Enum):
    """What the cut-out is written as. The API answers PNG or WebP; JPEG (no transparency, so
    only with the mask off) is made here from the API's PNG, so it means the same everywhere."""

    png = "png"
    webp = "webp"
    jpeg = "jpeg"

    @classmethod
    def _missing_(cls, value: object) -> OutputFormat | None:
        if isinstance(value, str):
            text = value.strip().lower().lstrip(".")
            if text == "jpg":
                return cls.jpeg
            if text in cls._value2member_map_ and text != value:
                return cls(text)
        return None

    @property
    def mime_type(self) -> str:
        return f"image/{self.value}"

    @property
    def suffix(self) -> str:
        return ".jpg" if self is OutputFormat.jpeg else f".{self.value}"

    @property
    def label(self) -> str:
        return {"png": "PNG", "webp": "WebP", "jpeg": "JPEG"}[self.value]

    @property
    def has_alpha(self) -> bool:
        return self is not OutputFormat.jpeg

    @classmethod
    def suffixes(cls) -> frozenset[str]:
        """File name endings that pick a format (`-o cut.jpg`)."""
        return frozenset({".png", ".webp", ".jpg", ".jpeg"})

    @classmethod
    def from_suffix(cls, suffix: str) -> OutputFormat | None:
        return cls(suffix) if suffix.lower() in cls.suffixes() else None

    @classmethod
    def names(cls) -> str:
        return "PNG, WebP and JPEG"


# What the API answers with (its `outputFormat`); JPEG is made on this side of it.
API_OUTPUT_FORMATS = (OutputFormat.png, OutputFormat.webp)

RGB = tuple[int, int, int]


E = TypeVar("E", bound=Enum)


def _choose(kind: type[E], value: object, name: str) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise OptionError(Option(name), f" {value!r}: choose {choices}") from None

WHITE: RGB = (255, 255, 255)


def parse_color(text: str) -> RGB:
    """Parse `#rrggbb`, `rrggbb`, `#rgb` or a CSS colour name (as Pillow knows them) into RGB."""
    from PIL import ImageColor

    value = text.strip()
    if value and not value.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in value):
        value = "#" + value
    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        raise ValueError(f"not a colour: {text!r} (use #rrggbb or a name such as white)") from None
    return rgb[:3]


def _rgb(value: object) -> RGB:
    """An (r, g, b) tuple of whole numbers 0-255 (a fourth, alpha, value is ignored)."""
    try:
        channels = [operator.index(c) for c in value]  # type: ignore[attr-defined]
    except TypeError:  # not a sequence, or not of whole numbers (0.5 is not 128)
        channels = []
    if len(channels) in (3, 4) and all(0 <= c <= 255 for c in channels):
        return tuple(channels[:3])  # type: ignore[return-value]
    raise OptionError(Option("background_color"), f" {value!r}: give a colour name, #rrggbb, "
                      "or (r, g, b) with whole numbers 0-255")


def parse_bool(text: str) -> bool:
    """Parse a form or config boolean the way the API accepts them."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


@dataclass(frozen=True)
class RemovalOptions:
    """What to do with one image. Defaults are the API's defaults."""

    mode: Mode = Mode.balanced
    output_format: OutputFormat = OutputFormat.webp
    include_mask: bool = True
    smooth_edges: bool = True
    preserve_shadows: bool = False
    # Only used when include_mask is off: the colour that replaces the background.
    background_color: RGB = field(default=WHITE)
    # Photos whose longer side is over this many pixels are shrunk to it first (None: never).
    # Not an API field: the remote backend shrinks before uploading.
    max_size: int | None = None
    # Write the matte (8-bit greyscale: the alpha the cut-out would carry) instead of the cut-out.
    # Not an API field: the remote backend takes the alpha of the API's cut-out.
    only_mask: bool = False
    # -- product photos (issue 35): layout.py parses them, imaging/shape.py applies them. Not
    # API fields: the remote backend applies them to the API's cut-out. margin, position and
    # enlarge only act with crop or a canvas.
    crop: bool = False  # trim the output to the subject's box (and its margin)
    margin: Margin | None = None
    canvas: Canvas | None = None  # place the subject on a canvas of this size or shape
    position: str = "center"  # where on the canvas, when it has room to spare
    enlarge: bool = True  # scale a small subject up to fill the canvas (off: at most 1:1)
    background_image: Backdrop | None = None  # fills the background, scaled to cover
    # -- end of the product-photo options

    @property
    def shaped(self) -> bool:
        """Whether the output's geometry or background goes beyond the plain cut-out."""
        return self.crop or self.canvas is not None or self.background_image is not None

    def __post_init__(self) -> None:
        if self.only_mask and not self.include_mask:
            raise OptionError(Option("only_mask"), " writes the matte of the transparent "
                              "cut-out, not a filled background: drop ",
                              Option("include_mask", "False"), option="only_mask")
        if self.include_mask and not self.output_format.has_alpha and not self.only_mask:
            raise OptionError("JPEG has no transparency: use it with the mask off (",
                              Option("include_mask", "False"), ", or a ",
                              Option("background_color"), "), or write PNG or WebP",
                              option="output_format")
        if self.max_size is not None and self.max_size < 1:
            raise OptionError(Option("max_size"), " must be at least 1 pixel")
        if self.background_image is not None and (self.include_mask or self.only_mask):
            raise OptionError(Option("background_image"), " fills the background: it cannot be "
                              "combined with a transparent one (", Option("include_mask"), ", ",
                              Option("only_mask"), ")", option="background_image")
        margin_room(self.margin, self.canvas)

    @classmethod
    def build(
        cls,
        *,
        mode: Mode | str | None = None,
        output_format: OutputFormat | str | None = None,
        include_mask: bool | None = None,
        smooth_edges: bool | None = None,
        preserve_shadows: bool | None = None,
        background_color: str | RGB | None = None,
        max_size: int | None = None,
        only_mask: bool = False,
        crop: bool | None = None,
        margin: str | float | Margin | None = None,
        canvas: str | tuple[int, int] | Canvas | None = None,
        position: str | None = None,
        enlarge: bool | None = None,
        background_image: str | os.PathLike[str] | Backdrop | None = None,
    ) -> RemovalOptions:
        """Options from plain values, as `bgremove.remove()` takes them (names or enums; a colour
        as text or an RGB tuple). `include_mask=None` keeps the background transparent unless a
        `background_color` is given (as rembg's `bgcolor` does) or the format is JPEG, which has
        no transparency. None, for the others, is the API's default (the fields above). Raises
        ValueError naming the option that is wrong. `only_mask`: the matte, as a greyscale
        image (JPEG too); it keeps the mask, so a `background_color` or `include_mask=False`
        with it is an error.

        Product photos: `crop` trims the output to the subject's box; `margin` keeps space
        around the subject (pixels, or "6%" of its size); `canvas` places it on a canvas of
        "1200x1200" pixels or the smallest of shape "1:1", scaled to fit (`enlarge=False`: never
        beyond its own size) at `position` (center, top, bottom, left, right, top-left, ...);
        `background_image`: a path, whose picture fills the background, scaled to cover.

        This signature is the one list of the options' keywords: `bgremove.remove()`,
        `Session.remove()` and the config file's removal settings all follow it."""
        default = _DEFAULT
        fmt = _choose(OutputFormat, default.output_format if output_format is None
                      else output_format, "output_format")
        if isinstance(background_color, str):
            colour = parse_color(background_color)
        elif background_color is not None:
            colour = _rgb(background_color)
        else:
            colour = default.background_color
        if only_mask and background_color is not None:
            raise OptionError(Option("only_mask"), " writes the matte, which has no background "
                              "to fill: drop ", Option("background_color"), option="only_mask")
        backdrop = None if background_image is None else load_backdrop(background_image)
        if only_mask and backdrop is not None:
            raise OptionError(Option("only_mask"), " writes the matte, which has no background "
                              "to fill: drop ", Option("background_image"), option="only_mask")
        if include_mask is None:
            include_mask = bool(only_mask) or (background_color is None and backdrop is None
                                               and fmt.has_alpha)
        if smooth_edges is None:
            smooth_edges = default.smooth_edges
        if preserve_shadows is None:
            preserve_shadows = default.preserve_shadows
        return cls(_choose(Mode, default.mode if mode is None else mode, "mode"), fmt,
                   bool(include_mask), bool(smooth_edges), bool(preserve_shadows), colour,
                   max_size, bool(only_mask), bool(crop),
                   None if margin is None else parse_margin(margin),
                   None if canvas is None else parse_canvas(canvas),
                   "center" if position is None else parse_position(position),
                   True if enlarge is None else bool(enlarge), backdrop)

    @classmethod
    def of(cls, options: RemovalOptions | None = None, **overrides: Any) -> RemovalOptions:
        """`options` (default: the API's defaults) with the keywords of `build` in `overrides`
        changed; what `remove(image, options, **overrides)` processes with."""
        if not overrides:
            return options if options is not None else cls()
        if options is None:
            return cls.build(**overrides)
        base = {f.name: getattr(options, f.name) for f in fields(cls)}
        if "include_mask" not in overrides and overrides.keys() & {
                "background_color", "output_format", "background_image"}:
            # The mask follows the new colour or format as `build` decides it (a colour fills
            # the background), from the colour these options fill with, if they fill.
            del base["include_mask"]
            if options.include_mask:
                del base["background_color"]
        return cls.build(**(base | overrides))

    def form_fields(self) -> dict[str, str]:
        """The multipart fields that ask the API for these options."""
        flag = {True: "true", False: "false"}
        return {
            "mode": self.mode.value,
            "outputFormat": self.output_format.value,
            "includeMask": flag[self.include_mask],
            "smoothEdges": flag[self.smooth_edges],
            "preserveShadows": flag[self.preserve_shadows],
        }

    @classmethod
    def from_form(cls, fields: Mapping[str, object]) -> RemovalOptions:
        """The options a request's form fields ask for (the inverse of `form_fields`), with the
        API's defaults for those not sent. A ValueError names the field that is wrong."""
        defaults = cls()

        def text(name: str) -> str | None:
            value = fields.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise ValueError(f"'{name}' must be a text field, not a file")
            return value.strip()

        def choice(name: str, allowed: tuple[E, ...], default: E) -> E:
            value = text(name)
            if value is None:
                return default
            # Exactly the contract's spellings (any case): no "jpg", no ".png".
            for member in allowed:
                if value.lower() == member.value:
                    return member
            names = ", ".join(member.value for member in allowed)
            raise ValueError(f"invalid {name} {value!r}: use one of {names}")

        def flag(name: str, default: bool) -> bool:
            value = text(name)
            if value is None:
                return default
            try:
                return parse_bool(value)
            except ValueError as exc:
                raise ValueError(f"invalid {name}: {exc}") from None

        return cls(
            mode=choice("mode", tuple(Mode), defaults.mode),
            output_format=choice("outputFormat", API_OUTPUT_FORMATS, defaults.output_format),
            include_mask=flag("includeMask", defaults.include_mask),
            smooth_edges=flag("smoothEdges", defaults.smooth_edges),
            preserve_shadows=flag("preserveShadows", defaults.preserve_shadows),
        )


_DEFAULT = RemovalOptions()
