"""The removal options, named and defaulted as the Background Removal API names them.

Every backend and the self-hosted server take the same `RemovalOptions`, so an option means the same
thing wherever an image is processed. This module stays free of heavy imports: the CLI builds one
before anything else is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class Mode(str, Enum):
    """Speed/quality trade-off: each mode is a longer pipeline over the same model."""

    fast = "fast"
    balanced = "balanced"
    quality = "quality"


class OutputFormat(str, Enum):
    png = "png"
    webp = "webp"

    @property
    def mime_type(self) -> str:
        return f"image/{self.value}"


RGB = tuple[int, int, int]

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

        def choice(name: str, kind: type[Enum], default: Enum) -> Enum:
            value = text(name)
            if value is None:
                return default
            try:
                return kind(value.lower())
            except ValueError:
                allowed = ", ".join(member.value for member in kind)
                raise ValueError(f"invalid {name} {value!r}: use one of {allowed}") from None

        def flag(name: str, default: bool) -> bool:
            value = text(name)
            if value is None:
                return default
            try:
                return parse_bool(value)
            except ValueError as exc:
                raise ValueError(f"invalid {name}: {exc}") from None

        return cls(
            mode=choice("mode", Mode, defaults.mode),
            output_format=choice("outputFormat", OutputFormat, defaults.output_format),
            include_mask=flag("includeMask", defaults.include_mask),
            smooth_edges=flag("smoothEdges", defaults.smooth_edges),
            preserve_shadows=flag("preserveShadows", defaults.preserve_shadows),
        )
