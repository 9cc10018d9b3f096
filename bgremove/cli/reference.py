"""Where each command's reference lives: the line that ends its --help.

The reference is docs/, one Markdown page per topic, shipped in the source distribution (there is
no public URL yet: when there is one, it goes here, once).
"""

from __future__ import annotations

import typer

# A command's page, by its name at the top level; sub-commands share their group's page.
PAGES = {
    "remove": "usage-and-options.md",
    "config": "configuration.md",
    "serve": "server-and-keys.md",
    "keys": "server-and-keys.md",
    "models": "models-and-devices.md",
    "frames": "hot-folder-and-frames.md",
}


def line(page: str | None) -> str:
    where = f"docs/{page}" if page else "README.md and docs/"
    return f"Reference: {where} in bgremove's source distribution."


def attach(app: typer.Typer) -> None:
    """End the --help of the group, of each command and of each sub-command with its line."""
    app.info.epilog = line(None)
    for command in app.registered_commands:
        command.epilog = line(PAGES.get(command.name or ""))
    for group in app.registered_groups:
        typer_app = group.typer_instance
        if typer_app is None:
            continue
        name = group.name or typer_app.info.name
        page = PAGES.get(name if isinstance(name, str) else "")
        typer_app.info.epilog = line(page)
        for command in typer_app.registered_commands:
            command.epilog = line(page)
