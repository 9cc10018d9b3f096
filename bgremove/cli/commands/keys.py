"""`bgremove keys ...`: the API keys and credits of `bgremove serve`, in its key database. These
commands work without the `server` extra."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bgremove.cli.commands import reported_errors
from bgremove.cli.exits import in_flags
from bgremove.cli.settings import DB_ENV
from bgremove.server.store import KeyStore, StoreMissing, key_id_of, open_store, url_password

DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="PATH|URL", envvar=DB_ENV,
    help="The key database: a SQLite file (PATH or sqlite:///PATH), or postgresql://USER@HOST/DB "
    "shared by several servers (the password from PGPASSWORD or ~/.pgpass).",
    show_default="$XDG_DATA_HOME/bgremove/keys.sqlite3", show_envvar=True,
    rich_help_panel="Server")]


keys_app = typer.Typer(
    name="keys",
    help="Manage the API keys and credits of `bgremove serve`.\n\n"
    "Example: bgremove keys create --email you@example.com --credits 100",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@keys_app.command(
    "create",
    help="Create an API key and print it to stdout. It is shown this once: only a hash is kept.\n\n"
    "Example: bgremove keys create --email you@example.com --credits 100",
)
def keys_create(
    email: Annotated[str, typer.Option(
        metavar="EMAIL", help="Whose key it is (sent back as x-user-email).")],
    credits: Annotated[int, typer.Option(
        metavar="N", help="Credits to start with (one per image).", min=0)],
    db: DbOption = None,
) -> None:
    with reported_errors():
        with open_key_store(db) as store:
            key = store.create(email, credits)
            info = store.get(key_id_of(key) or key)  # a key it made is shaped as ours
    typer.echo(key)
    typer.echo(f"bgremove: created key {info.id} for {info.email} with {_credits(info.credits)}. "
               "Keep the key now: it cannot be shown again.", err=True)


@keys_app.command(
    "list",
    help="List the keys by id, never showing the keys themselves.\n\n"
    "With email, credits, use and status.\n\n"
    "Example: bgremove keys list --json",
)
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")] = False,
    db: DbOption = None,
) -> None:
    with reported_errors():
        try:
            with open_key_store(db, create=False) as store:
                keys = store.list()
        except StoreMissing as exc:
            if as_json:
                typer.echo("[]")
            typer.echo(f"bgremove: {in_flags(exc)}", err=True)
            return
    if as_json:
        typer.echo(json.dumps([info.as_dict() for info in keys], indent=2))
        return
    if not keys:
        typer.echo("bgremove: no keys yet; create one with: bgremove keys create "
                   "--email you@example.com --credits 100", err=True)
        return
    rows = [("ID", "EMAIL", "CREDITS", "USED", "CREATED", "LAST USED", "STATUS")]
    for info in keys:
        rows.append((info.id, info.email, str(info.credits), str(info.used), info.created_at,
                     info.last_used_at or "-", "active" if info.active else "revoked"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


@keys_app.command(
    "add-credits",
    help="Add credits to a key.\n\nExample: bgremove keys add-credits 3f9a2c1d7b4e 500",
)
def keys_add_credits(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (keys list).")],
    credits: Annotated[int, typer.Argument(metavar="N", help="Credits to add.", min=1)],
    db: DbOption = None,
) -> None:
    with reported_errors():
        with open_key_store(db, create=False) as store:
            info = store.add_credits(key_id, credits)
    typer.echo(f"bgremove: key {info.id} ({info.email}) now has {_credits(info.credits)}.",
               err=True)


@keys_app.command(
    "revoke",
    help="Revoke a key: the server refuses it from now on (401).\n\n"
    "Example: bgremove keys revoke 3f9a2c1d7b4e",
)
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (keys list).")],
    db: DbOption = None,
) -> None:
    with reported_errors():
        with open_key_store(db, create=False) as store:
            info = store.revoke(key_id)
    typer.echo(f"bgremove: revoked key {info.id} ({info.email}).", err=True)


def _credits(n: int) -> str:
    return f"{n} credit" if n == 1 else f"{n} credits"


def open_key_store(db: str | None, *, create: bool = True) -> KeyStore:
    """The key database `db` names (default: $BGREMOVE_DB, else the SQLite file), warning when
    its password is on the command line."""
    password = url_password(db or "")
    if password and any(password in arg for arg in sys.argv):
        typer.echo("bgremove: warning: the database password is on the command line, where "
                   "every user of this machine can read it (ps); put it in PGPASSWORD or "
                   "~/.pgpass instead", err=True)
    return open_store(db, create=create)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app)
