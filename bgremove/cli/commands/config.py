"""`bgremove config show` and `bgremove config path`: the settings bgremove uses, and where each
comes from."""

from __future__ import annotations

import typer

from bgremove.cli.commands import reported_errors
from bgremove.cli.params import ConfigOption
from bgremove.cli.settings import config_path
from bgremove.cli.settings import describe as describe_settings
from bgremove.cli.settings import load as load_settings

config_app = typer.Typer(
    help="Show the settings bgremove uses, and where each comes from.\n\n"
    "Flags win over BGREMOVE_* variables, which win over the config file.\n\n"
    "Example: bgremove config show",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@config_app.command(
    "show",
    help="Print the effective settings and where each comes from.\n\n"
    "The API key is masked: only its last 4 characters are shown.\n\n"
    "Example: BGREMOVE_MODE=fast bgremove config show",
)
def config_show(config: ConfigOption = None) -> None:
    with reported_errors():
        settings = load_settings(config=config)
    typer.echo(describe_settings(settings))


@config_app.command(
    "path",
    help="Print the path of the config file bgremove reads.\n\n"
    "It is printed whether or not the file exists.\n\n"
    "Example: ${EDITOR:-vi} \"$(bgremove config path)\"",
)
def config_path_command(config: ConfigOption = None) -> None:
    typer.echo(str(config_path(config)[0]))


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
