"""Every command's setting flags, derived from the settings' declarations (settings.Settings).

A command names the settings it takes; `@takes_settings("mode", "model", ...)` adds their flags
(and `--config`) to its signature, spelled, typed, defaulted and sectioned as declared, and hands
the command a `Given`: the settings typed on its command line, which win over the environment
and the config file when it loads them. No command writes a setting's flag by hand, so `--mode`
means the same, with the same help, in `remove`, `frames` and `serve` (tests/test_declarations.py
walks every command to check it).

Imported by `bgremove --help`: no heavy imports.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from bgremove.cli.settings import DECLARED, RUNS, SECTIONS, Settings
from bgremove.cli.settings import load as load_settings

if typing.TYPE_CHECKING:  # typer vendors click: its types are typer's
    from typer._click import Context, HelpFormatter

ConfigOption = Annotated[str | None, typer.Option(
    "--config", metavar="FILE", show_default=False, rich_help_panel=RUNS,
    help="Settings file to read [default: $BGREMOVE_CONFIG, else "
    "$XDG_CONFIG_HOME/bgremove/config.toml, else ~/.config/bgremove/config.toml]")]


@dataclass(frozen=True)
class Given:
    """The settings a command was given on its command line, and the config file it named."""

    flags: dict[str, Any]
    config: str | None = None

    def load(self, **implied: Any) -> Settings:
        """The effective settings. `implied`: values the command line says without a flag
        (`-o cut.png` means PNG); they rank as the command line, below the flags themselves."""
        return load_settings({**implied, **self.flags}, config=self.config)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(name: str) -> Any:
    """The command line's type of a setting: its choices' enum, else its field's type, less
    None (a flag not given is None: it does not override the environment or config file)."""
    declared = DECLARED[name]
    if declared.choices is not None:
        return declared.choices
    kind = typing.get_type_hints(Settings)[name]
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    kind = args[0] if args else kind
    # An enum without declared choices takes more spellings than its values (`-f jpg`): the
    # setting's parser reads the text.
    return str if isinstance(kind, type) and issubclass(kind, Enum) else kind


def _default(name: str) -> Any:
    """The setting's default as its command-line type (an enum member for a choice)."""
    value = next(f.default for f in fields(Settings) if f.name == name)
    choices = DECLARED[name].choices
    return choices(value) if choices is not None and value is not None else value


def setting_parameter(name: str) -> inspect.Parameter:
    """The Typer parameter of the setting `name`, as declared."""
    declared = DECLARED[name]
    kind = _value_type(name)
    if kind is bool:
        # A switch pair (--smooth-edges / --no-smooth-edges) shows its default as the switch;
        # a switch with other spellings (--only-mask, -om) is a plain flag, off by default.
        decls = (flag_name(name), *declared.flags) if declared.flags else ()
        option = typer.Option(*decls, help=declared.help, rich_help_panel=declared.section)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_default(name),
                                 annotation=Annotated[bool, option])
    # The default is shown, and is what the command receives when the flag is not given: the
    # flag's source, not its value, says whether it was typed (and so outranks the
    # environment and the config file).
    default = _default(name)
    shows = declared.shows if declared.shows is not None else default is not None
    option = typer.Option(
        flag_name(name), *declared.flags, help=declared.help, metavar=declared.metavar,
        show_default=shows or False, rich_help_panel=declared.section,
        min=declared.minimum, case_sensitive=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind | None, option])


def config_parameter() -> inspect.Parameter:
    return inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=ConfigOption)


def takes_settings(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the flags of the settings `names` and `--config`. The command declares a
    parameter `given: Given` (and may declare `ctx: typer.Context`); its other parameters are
    its own, written as usual."""
    unknown = set(names) - DECLARED.keys()
    if unknown:
        raise ValueError(f"not declared settings: {sorted(unknown)}")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True).parameters
        wants_ctx = "ctx" in own
        kept = [p for p in own.values() if p.name not in ("given", "ctx")]
        added = [setting_parameter(name) for name in names] + [config_parameter()]
        ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)

        def run(ctx: typer.Context, **values: Any) -> Any:
            flags = {}
            for name in names:
                value = values.pop(name)
                source = ctx.get_parameter_source(name)
                if source is not None and source.name == "COMMANDLINE":
                    flags[name] = value.value if isinstance(value, Enum) else value
            given = Given(flags, values.pop("config"))
            return command(**({"ctx": ctx} if wants_ctx else {}), **values, given=given)

        parameters = [ctx, *kept, *added]
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.__name__, run.__doc__ = command.__name__, command.__doc__
        run.__settings__ = names  # type: ignore[attr-defined]
        return run

    return decorate


class SectionedCommand(TyperCommand):
    """--help with the options in sections (Output, Model and engine, ...), as `docker run`
    and `ffmpeg` show a long list: each option's section is its `rich_help_panel`."""

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                section = "Arguments"
            else:
                section = getattr(param, "rich_help_panel", None) or "Options"
            sections.setdefault(section, []).append(record)
        # Arguments, then the command's own sections, the settings' in their order, and the
        # general options (--help) last.
        def rank(section: str) -> int:
            if section in SECTIONS:
                return 2 + SECTIONS.index(section)
            return {"Arguments": 0, "Options": 2 + len(SECTIONS)}.get(section, 1)

        order = sorted(sections, key=rank)
        for section in order:
            with formatter.section(section):
                formatter.write_dl(sections[section])
