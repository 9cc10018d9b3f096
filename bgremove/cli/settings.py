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
from typing import TYPE_CHECKING, Any

from bgremove.contract import DEFAULT_API_URL, RATE_LIMIT, RATE_WINDOW
from bgremove.errors import Option, OptionError, UsageError
from bgremove.layout import POSITIONS, parse_canvas, parse_margin, parse_position
from bgremove.models import MODEL_TYPES
from bgremove.options import Mode, OutputFormat, RemovalOptions, parse_bool, parse_color
from bgremove.precision import Precision

# The key store's variable (--db of `serve` and `keys`), declared where the store reads it.
from bgremove.server.location import DB_ENV as DB_ENV
from bgremove.server.location import db_from_env as db_from_env

if TYPE_CHECKING:
    from bgremove.apikey import Secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport (a dependency there)
    import tomli as tomllib

ENV_PREFIX = "BGREMOVE_"
CONFIG_ENV = "BGREMOVE_CONFIG"

Parser = Callable[[Any], Any]


class Backend(str, Enum):
    local = "local"
    remote = "remote"


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


@dataclass(frozen=True)
class Declared:
    """How one setting appears to a user: the command line (its flag `--name`, with the extra
    spellings in `flags`, a `metavar`, `minimum`, the help `section`), the environment
    (`BGREMOVE_NAME`) and the config file (`name`). Its type and default are the `Settings`
    field's; `parse` turns what a user wrote (or a value already typed) into that type."""

    parse: Parser
    help: str
    section: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    # What --help shows as the default, where the value itself would mislead (None: the value).
    shows: str | None = None
    minimum: float | None = None
    secret: bool = False
    # The command line's type for a flag whose values are a closed set: its choices are
    # completed and checked there (any case); the others are checked by `parse`.
    choices: type[Enum] | None = None


def declare(default: Any, parse: Parser, help: str, section: str, **how: Any) -> Any:
    # A secret stays out of repr(), so it cannot leak into a traceback or a debug log.
    declared = Declared(parse, help, section, **how)
    return field(default=default, repr=not declared.secret, metadata={"declared": declared})


_REMOVAL = RemovalOptions()
WHITE_NAME = "white"  # RemovalOptions' background_color, as the config file names it

# The sections of a command's --help, in the order they are shown.
OUTPUT, PRODUCT, ENGINE, REMOTE, RUNS, MESSAGES = (
    "Output", "Product photos", "Model and engine", "Remote API", "Runs and CI", "Messages")
SECTIONS = (OUTPUT, PRODUCT, ENGINE, REMOTE, RUNS, MESSAGES)


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: its name is the config file's key, `BGREMOVE_<NAME>` its
    environment variable and `--name` its flag in every command that takes it (cli/params.py
    derives those from here). One run's values, and `sources[name]`: where each came from."""

    # The removal options, with RemovalOptions' defaults (the colour by its name).
    mode: Mode = declare(_REMOVAL.mode, _enum(Mode), "fast | balanced | quality.", OUTPUT,
                         choices=Mode)
    output_format: OutputFormat = declare(
        _REMOVAL.output_format, _enum(OutputFormat),
        "Output format [default: webp, or the -o file's extension]. JPEG has no transparency: "
        "the background is filled.", OUTPUT, flags=("--format", "-f"), metavar="png|webp|jpeg",
        shows="")
    include_mask: bool = declare(
        _REMOVAL.include_mask, _bool,
        "Transparent background (RGBA); off: background filled with --background-color.",
        OUTPUT)
    smooth_edges: bool = declare(
        _REMOVAL.smooth_edges, _bool,
        "Anti-aliased soft edges; off: hard edges, each pixel fully in or out.", OUTPUT)
    preserve_shadows: bool = declare(
        _REMOVAL.preserve_shadows, _bool,
        "Keep the subject's cast shadow as a soft semi-transparent layer.", OUTPUT)
    background_color: str = declare(
        WHITE_NAME, _colour, "Fill the background with this colour (#rrggbb or a name); "
        "implies --no-include-mask.", OUTPUT, metavar="COLOUR")
    max_size: int | None = declare(
        _REMOVAL.max_size, _integer(1), "Shrink photos whose longer side is bigger to this size "
        "first (instead of refusing those over the size limit).", OUTPUT, metavar="PIXELS",
        minimum=1)
    only_mask: bool = declare(
        _REMOVAL.only_mask, _bool, "Write the matte (8-bit greyscale: the alpha of the "
        "cut-out), not the cut-out. JPEG works too.", OUTPUT, flags=("-om",))

    # Product photos: parsed by bgremove/layout.py, applied by bgremove/imaging/shape.py.
    crop: bool = declare(_REMOVAL.crop, _bool, "Trim the output to the subject (and its "
                         "--margin).", PRODUCT)
    margin: str | None = declare(None, _checked(parse_margin), "Space around the subject with "
                                 "--crop or --canvas: pixels, or a percentage of the subject's "
                                 "size.", PRODUCT, metavar="N|N%")
    canvas: str | None = declare(None, _checked(parse_canvas), "Place the subject on a canvas "
                                 "of this size (scaled to fit inside the margin), or on the "
                                 "smallest canvas of this shape.", PRODUCT, metavar="WxH|W:H")
    position: str = declare(_REMOVAL.position, _checked(parse_position), "Where the subject "
                            "sits on the canvas: " + ", ".join(POSITIONS) + ".", PRODUCT,
                            metavar="|".join(POSITIONS[:3]) + "|...")
    enlarge: bool = declare(_REMOVAL.enlarge, _bool, "Scale a subject smaller than the canvas "
                            "up to fill it; off: at most its own size.", PRODUCT)
    background_image: str | None = declare(None, _path, "Fill the background with this image, "
                                           "scaled to cover; implies --no-include-mask.",
                                           PRODUCT, metavar="FILE")

    backend: str = declare("local", _choice("local", "remote"),
                           "local: the model on this machine; remote: the Background Removal "
                           "API.", ENGINE, choices=Backend)
    model: str | None = declare(None, _text, "Model name (see `bgremove models list`) or an "
                                ".onnx file.", ENGINE, metavar="NAME|PATH",
                                shows="u2netp, bundled")
    model_type: str | None = declare(None, _choice(*MODEL_TYPES), "The architecture of a model "
                                     "file of your own, which says how it is fed and read.",
                                     ENGINE, metavar="|".join(MODEL_TYPES),
                                     shows="told from its graph")
    device: str = declare("auto", _text, "Where the model runs: auto | cpu | cuda | rocm | "
                          "directml | coreml | openvino | tensorrt (onnxruntime execution "
                          "providers; auto: the best installed accelerator, else cpu).", ENGINE,
                          metavar="DEVICE")
    precision: str = declare("auto", _choice(*(p.value for p in Precision)),
                             "The bundled model's arithmetic: int8 is its quantised build, about "
                             "twice as fast on CPUs with VNNI or AMX; auto: int8 there, checked "
                             "against fp32 as it loads; fp32 elsewhere.",
                             ENGINE, choices=Precision)
    workers: int | None = declare(None, _integer(1), "Images processed at once.", ENGINE,
                                  metavar="N", minimum=1, shows="one per core, by memory; GPU: "
                                  "half the cores; remote: 8")
    threads: int | None = declare(None, _integer(1), "onnxruntime threads per image.", ENGINE,
                                  metavar="N", minimum=1, shows="cores / workers")
    cluster: str | None = declare(
        None, _cluster, "Process the images on Dask workers: local:N starts N worker processes "
        "here; tcp://HOST:8786 or a scheduler .json file joins a running cluster that shares "
        "the filesystem. Needs bgremove[cluster].", ENGINE, metavar="local[:N]|ADDRESS|FILE")

    api_url: str = declare(DEFAULT_API_URL, _url, "API endpoint (remote backend), e.g. a "
                           "`bgremove serve`.", REMOTE, metavar="URL")
    api_key: str | None = declare(None, _text, "API key (remote backend). Prefer --api-key-file "
                                  "or BGREMOVE_API_KEY: a command line is visible to other "
                                  "users of the machine.", REMOTE, metavar="KEY", secret=True)
    api_key_file: str | None = declare(None, _path, "File holding the API key.", REMOTE,
                                       metavar="FILE")
    rate_limit: int = declare(RATE_LIMIT, _integer(1), "Requests started per --rate-window at "
                              "most (remote backend).", REMOTE, metavar="N", minimum=1)
    rate_window: float = declare(RATE_WINDOW, _positive_number, "The window --rate-limit counts "
                                 "in.", REMOTE, metavar="SECONDS", minimum=0.001,
                                 shows=f"{RATE_WINDOW:g}")
    max_credits: int | None = declare(None, _integer(0), "Stop once this many credits are spent "
                                      "(remote backend).", REMOTE, metavar="N", minimum=1)

    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # The config file that was looked for, and whether it exists.
    config_file: Path | None = field(default=None, compare=False)
    config_found: bool = field(default=False, compare=False)

    def removal_options(self) -> RemovalOptions:
        """The options of a run. A colour asked for on the command line fills the background,
        as rembg's --bgcolor does; one from the environment or the config file is only the
        colour used when the mask is off. JPEG, which has no transparency, turns the mask off
        unless it was asked for (which is then an error). The rules between options are
        RemovalOptions.build's; only which of two values wins, by where each came from, is
        decided here."""
        mask_source = self.sources.get("include_mask", "default")
        colour_asked = self.sources.get("background_color") == "command line"
        values = {f.name: getattr(self, f.name) for f in fields(RemovalOptions)}
        if self.only_mask:
            # The matte has no background: a colour, a picture or a mask typed on the command
            # line contradicts it (build says how); from the environment or config file, they
            # are moot.
            typed = {name for name in ("background_color", "background_image", "include_mask")
                     if self.sources.get(name) == "command line"}
            values["background_color"] = self.background_color if colour_asked else None
            if "background_image" not in typed:
                values["background_image"] = None
            values["include_mask"] = self.include_mask if "include_mask" in typed else None
            return _built(values)
        # A background image fills the background wherever it is set: unlike the colour, it
        # has no default that would be only the colour used when the mask is off.
        filled = colour_asked or self.background_image is not None
        if filled and mask_source == "command line" and self.include_mask:
            raise OptionError(Option("background_color" if colour_asked else "background_image"),
                              " fills the background and ", Option("include_mask"),
                              " keeps it transparent: give one of them")
        if mask_source == "command line" or (mask_source != "default" and not filled):
            include_mask = self.include_mask
            # JPEG asked for where it outranks the mask (--format jpeg on the command line over
            # include_mask in the config file) turns the mask off, as it does by default.
            if include_mask and not self.output_format.has_alpha and rank(
                    self.sources.get("output_format", "default")) > rank(mask_source):
                include_mask = False
        else:
            include_mask = not filled and self.output_format.has_alpha
        return _built({**values, "include_mask": include_mask})

    def items(self) -> Iterator[tuple[str, Any, str]]:
        """(name, value, source) of every setting, secrets masked."""
        for spec in setting_fields():
            value = getattr(self, spec.name)
            if spec.metadata["declared"].secret and value is not None:
                value = mask_secret(value)
            yield spec.name, value, self.sources.get(spec.name, "default")

    def public(self) -> dict[str, Any]:
        """The settings as plain JSON values, secrets masked: safe for reports and logs."""
        return {name: value.value if isinstance(value, Enum) else value
                for name, value, _ in self.items()}


def _built(values: dict[str, Any]) -> RemovalOptions:
    try:
        return RemovalOptions.build(**values)
    except OptionError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def rank(source: str) -> int:
    """A setting's precedence by its source: command line > environment > config file >
    default."""
    if source == "command line":
        return 3
    if source.startswith("env "):
        return 2
    return 1 if source == "config file" else 0


def setting_fields() -> list[Any]:
    return [f for f in fields(Settings) if "declared" in f.metadata]


def declared(name: str) -> Declared:
    """How the setting `name` appears to a user."""
    return DECLARED[name]


SETTING_NAMES = tuple(f.name for f in setting_fields())
DECLARED: dict[str, Declared] = {f.name: f.metadata["declared"] for f in setting_fields()}
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
        name, parse = spec.name, spec.metadata["declared"].parse
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
            shown = "(hidden)" if spec.metadata["declared"].secret else repr(raw)
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


# -- the API key (moved from bgremove/apikey.py: the library does not know settings) --------------

def api_key_from(settings: Settings) -> Secret | None:
    """The key from `api_key` or `api_key_file`, whichever comes from the stronger source
    (command line, then environment, then config file); the key itself when both tie."""
    from bgremove.apikey import Secret, read_key_file

    def strength(name: str) -> int:
        return rank(settings.sources.get(name, "default"))

    key_file = settings.api_key_file
    if key_file is not None and (
            settings.api_key is None or strength("api_key_file") > strength("api_key")):
        return Secret(read_key_file(Path(key_file)))
    return Secret(settings.api_key) if settings.api_key else None
