"""Settings: from the command line, else the environment, else the config file, else the defaults.

A setting has one name everywhere: `mode` in the config file, `BGREMOVE_MODE` in the environment,
`--mode` on the command line. The config file is TOML, flat `name = value` pairs, at
`$XDG_CONFIG_HOME/bgremove/config.toml` (else `~/.config/bgremove/config.toml`); `--config PATH` or
`BGREMOVE_CONFIG` names another. Every value keeps the name of where it came from, so
`bgremove config show` can say why a setting is what it is.

This module is imported by `bgremove --help`: it must stay free of heavy imports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from bgremove.contract import DEFAULT_API_URL, RATE_LIMIT, RATE_WINDOW
from bgremove.errors import OptionError, UsageError
from bgremove.layout import POSITIONS, parse_canvas, parse_margin, parse_position
from bgremove.options import Mode, OutputFormat, RemovalOptions, parse_bool, parse_color

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport (a dependency there)
    import tomli as tomllib

ENV_PREFIX = "BGREMOVE_"
CONFIG_ENV = "BGREMOVE_CONFIG"
# The key store of `bgremove serve` and `bgremove keys` (their --db): a server's, not a run's.
DB_ENV = "BGREMOVE_DB"

Parser = Callable[[Any], Any]


def _enum(kind: type[Enum]) -> Parser:
    def parse(value: Any) -> Enum:
        try:
            return kind(value.value if isinstance(value, Enum) else value)
        except ValueError:
            raise ValueError(f"expected one of {', '.join(m.value for m in kind)}") from None

    return parse


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        value = value.value if isinstance(value, Enum) else value
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value)
    raise ValueError("expected true or false")


def _integer(minimum: int) -> Parser:
    def parse(value: Any) -> int:
        # TOML's true is an int in Python; a count is never a boolean.
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"expected a whole number of at least {minimum}")
        return value

    return parse


def _positive_number(value: Any) -> float:
    try:
        number = float(value) if isinstance(value, (str, int, float)) else -1.0
    except ValueError:
        number = -1.0
    if isinstance(value, bool) or not number > 0:
        raise ValueError("expected a number above 0")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _colour(value: Any) -> str:
    text = _text(value)
    parse_color(text)  # ValueError with a helpful message when it is not a colour
    return text


def _url(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return text


def _path(value: Any) -> str:
    return str(Path(_text(value)).expanduser())


def _cluster(value: Any) -> str:
    text = _text(value)
    kind, colon, count = text.partition(":")
    if kind == "local":
        if colon and not (count.isdigit() and int(count) >= 1):
            raise ValueError("expected local:N, N a whole number of at least 1")
        return text
    if text.endswith(".json"):
        return str(Path(text).expanduser())
    host, colon, port = text.rpartition(":")
    if "://" in text or (host and port.isdigit()):
        return text
    raise ValueError("expected local, local:N, a scheduler's address (tcp://HOST:8786) or a "
                     "scheduler file (.json)")


def _checked(parse: Callable[[Any], Any]) -> Parser:
    """A setting kept as the text given, once `parse` accepts it (it names the accepted forms)."""
    def check(value: Any) -> str:
        text = str(value).strip() if isinstance(value, (str, int, float)) else value
        try:
            parsed = parse(text)
        except OptionError as exc:
            raise ValueError(exc.words().split(": ", 1)[-1]) from None
        return parsed if isinstance(parsed, str) else text

    return check


def _setting(default: Any, parse: Parser, help: str, *, secret: bool = False) -> Any:
    # A secret stays out of repr(), so it cannot leak into a traceback or a debug log.
    return field(default=default, repr=not secret,
                 metadata={"parse": parse, "help": help, "secret": secret})


_REMOVAL = RemovalOptions()
WHITE_NAME = "white"  # RemovalOptions' background_color, as the config file names it


@dataclass(frozen=True)
class Settings:
    """The effective settings of one run. `sources[name]` says where each value came from."""

    backend: str = _setting("local", _choice("local", "remote"),
                            "local: the bundled model on this machine; remote: the API")
    # The removal options, with RemovalOptions' defaults (the colour by its name).
    mode: Mode = _setting(_REMOVAL.mode, _enum(Mode), "fast | balanced | quality")
    output_format: OutputFormat = _setting(_REMOVAL.output_format, _enum(OutputFormat),
                                           "png | webp | jpeg")
    include_mask: bool = _setting(_REMOVAL.include_mask, _bool, "transparent background")
    smooth_edges: bool = _setting(_REMOVAL.smooth_edges, _bool, "anti-aliased soft edges")
    preserve_shadows: bool = _setting(_REMOVAL.preserve_shadows, _bool, "keep the cast shadow")
    background_color: str = _setting(WHITE_NAME, _colour, "fill colour without the mask")
    max_size: int | None = _setting(_REMOVAL.max_size, _integer(1),
                                    "shrink photos to this many pixels on the longer side")
    only_mask: bool = _setting(_REMOVAL.only_mask, _bool,
                               "write the matte (greyscale), not the cut-out")
    # -- product photos (issue 35): parsed by bgremove/layout.py
    crop: bool = _setting(_REMOVAL.crop, _bool, "trim the output to the subject")
    margin: str | None = _setting(None, _checked(parse_margin), "space around the subject with "
                                  "crop or canvas: pixels (40) or percent of its size (6%)")
    canvas: str | None = _setting(None, _checked(parse_canvas), "place the subject on a canvas: "
                                  "WIDTHxHEIGHT or a ratio W:H")
    position: str = _setting(_REMOVAL.position, _checked(parse_position),
                             f"where on the canvas: {' | '.join(POSITIONS)}")
    enlarge: bool = _setting(_REMOVAL.enlarge, _bool,
                             "scale a small subject up to fill the canvas")
    background_image: str | None = _setting(None, _path, "fill the background with this image")
    # -- end of the product-photo settings
    model: str | None = _setting(None, _text, "model name or .onnx path (local backend)")
    device: str = _setting("auto", _text, "where the model runs: auto | cpu | cuda | ...")
    precision: str = _setting("auto", _choice("fp32", "int8", "auto"),
                              "the bundled model's arithmetic: fp32 | int8 | auto")
    workers: int | None = _setting(None, _integer(1),
                                   "images in flight at once (default: by cores)")
    threads: int | None = _setting(None, _integer(1),
                                   "onnxruntime threads per image (default: cores / workers)")
    api_url: str = _setting(DEFAULT_API_URL, _url, "the API endpoint (remote backend)")
    api_key: str | None = _setting(None, _text, "the API key (remote backend)", secret=True)
    api_key_file: str | None = _setting(None, _path, "a file holding the API key")
    rate_limit: int = _setting(RATE_LIMIT, _integer(1), "requests per rate_window at most (remote)")
    rate_window: float = _setting(RATE_WINDOW, _positive_number,
                                  "seconds the rate_limit applies to")
    max_credits: int | None = _setting(None, _integer(0), "stop after spending this many credits")
    cluster: str | None = _setting(None, _cluster, "process batches on Dask workers: local, "
                                   "local:N, tcp://HOST:8786 or a scheduler .json file")

    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # The config file that was looked for, and whether it exists.
    config_file: Path | None = field(default=None, compare=False)
    config_found: bool = field(default=False, compare=False)

    def removal_options(self) -> RemovalOptions:
        """The options of a run. A colour asked for on the command line fills the background,
        as rembg's --bgcolor does; one from the environment or the config file is only the
        colour used when the mask is off. JPEG, which has no transparency, turns the mask off
        unless it was asked for (which is then an error)."""
        mask_source = self.sources.get("include_mask", "default")
        colour_asked = self.sources.get("background_color") == "command line"
        if self.background_image is not None and not self.only_mask:
            # A background image fills the background wherever it is set: unlike the colour,
            # it has no default that would be only the colour used when the mask is off.
            colour_asked = True
        if self.only_mask:
            return self._mask_options(mask_source, colour_asked)
        if colour_asked and mask_source == "command line" and self.include_mask:
            raise UsageError("--background-color or --background-image fills the background and "
                             "--include-mask keeps it transparent: give one of them")
        if mask_source == "command line" or (mask_source != "default" and not colour_asked):
            include_mask = self.include_mask
            # JPEG asked for where it outranks the mask (--format jpeg on the command line over
            # include_mask in the config file) turns the mask off, as it does by default.
            if include_mask and not self.output_format.has_alpha and rank(
                    self.sources.get("output_format", "default")) > rank(mask_source):
                include_mask = False
        else:
            include_mask = not colour_asked and self.output_format.has_alpha
        try:
            values = {f.name: getattr(self, f.name) for f in fields(RemovalOptions)}
            return RemovalOptions.build(**{**values, "include_mask": include_mask})
        except OptionError:
            raise
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _mask_options(self, mask_source: str, colour_asked: bool) -> RemovalOptions:
        """--only-mask writes the alpha of the transparent cut-out: a background asked for on
        the command line contradicts it; one from the environment or config file is moot."""
        if colour_asked or (self.background_image is not None and rank(
                self.sources.get("background_image", "default")) == 3):
            raise UsageError("--only-mask writes the matte, which has no background to fill: "
                             "drop --background-color and --background-image")
        if mask_source == "command line" and not self.include_mask:
            raise UsageError("--only-mask writes the matte of the transparent cut-out: drop "
                             "--no-include-mask")
        try:
            return RemovalOptions.build(
                mode=self.mode, output_format=self.output_format, include_mask=True,
                smooth_edges=self.smooth_edges, preserve_shadows=self.preserve_shadows,
                max_size=self.max_size, only_mask=True, crop=self.crop, margin=self.margin,
                canvas=self.canvas, position=self.position, enlarge=self.enlarge)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def items(self) -> Iterator[tuple[str, Any, str]]:
        """(name, value, source) of every setting, secrets masked."""
        for spec in setting_fields():
            value = getattr(self, spec.name)
            if spec.metadata["secret"] and value is not None:
                value = mask_secret(value)
            yield spec.name, value, self.sources.get(spec.name, "default")

    def public(self) -> dict[str, Any]:
        """The settings as plain JSON values, secrets masked: safe for reports and logs."""
        return {name: value.value if isinstance(value, Enum) else value
                for name, value, _ in self.items()}


def rank(source: str) -> int:
    """A setting's precedence by its source: command line > environment > config file >
    default."""
    if source == "command line":
        return 3
    if source.startswith("env "):
        return 2
    return 1 if source == "config file" else 0


def setting_fields() -> list[Any]:
    return [f for f in fields(Settings) if "parse" in f.metadata]


SETTING_NAMES = tuple(f.name for f in setting_fields())
DEFAULTS = Settings()


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def mask_secret(secret: str) -> str:
    """Show only enough of a key to tell two apart: its last 4 characters (none of a short one)."""
    return "…" + secret[-4:] if len(secret) >= 12 else "…"


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None,
                ) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (then it must exist)."""
    environ = os.environ if environ is None else environ
    named = explicit or environ.get(CONFIG_ENV) or None
    if named:
        return Path(named).expanduser(), True
    base = environ.get("XDG_CONFIG_HOME") or ""
    # The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "bgremove" / "config.toml", False


def db_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The key store `$BGREMOVE_DB` names, if any (an empty variable counts as unset)."""
    return (os.environ if environ is None else environ).get(DB_ENV) or None


# Earlier names of settings, still read from config files and the environment.
ALIASES = {"format": "output_format"}


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's settings by name (`include-mask` and `include_mask` both work)."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"config file {path}: {exc.strerror or exc}") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in SETTING_NAMES:
            raise UsageError(f"config file {path}: unknown setting {key!r} "
                             f"(known: {', '.join(SETTING_NAMES)})")
        values[name] = value
    return values


def load(flags: Mapping[str, Any] | None = None, *, config: str | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: `flags` (given on the command line) win over the environment, which
    wins over the config file, which wins over the defaults. Bad values are usage errors that
    name where the value came from."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    path, named = config_path(config, environ)
    found = path.is_file()
    if named and not found:
        raise UsageError(f"config file {path}: not found")
    from_file = read_config_file(path) if found else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in setting_fields():
        name, parse = spec.name, spec.metadata["parse"]
        variable = env_name(name)
        old = next((env_name(a) for a, n in ALIASES.items() if n == name), None)
        if not environ.get(variable) and old and environ.get(old):
            variable = old
        if flags.get(name) is not None:
            raw, where, source = flags[name], f"--{name.replace('_', '-')}", "command line"
        elif environ.get(variable):  # an empty variable counts as unset
            raw, source = environ[variable], f"env {variable}"
            where = f"environment variable {variable}"
        elif name in from_file:
            raw, where, source = from_file[name], f"config file {path}: {name}", "config file"
        else:
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if spec.metadata["secret"] else repr(raw)
            raise UsageError(f"{where}: {shown} is not valid: {exc}") from None
        sources[name] = source
    return Settings(**values, sources=sources, config_file=path, config_found=found)


def describe(settings: Settings) -> str:
    """The effective settings, one `name = value  # source` line each, secrets masked."""
    state = "found" if settings.config_file is not None and settings.config_found else "not found"
    lines = [f"# config file: {settings.config_file} ({state})",
             "# precedence: command line > environment (BGREMOVE_*) > config file > default"]
    width = max(len(name) for name in SETTING_NAMES)
    for name, value, source in settings.items():
        if isinstance(value, Enum):
            value = value.value
        if value is None:
            shown = "(not set)"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, str):
            shown = _toml_string(value)
        else:
            shown = repr(value)
        lines.append(f"{name:<{width}} = {shown:<20}  # {source}")
    return "\n".join(lines)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
