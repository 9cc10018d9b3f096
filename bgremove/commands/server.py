"""`bgremove serve` (the self-hosted API) and `bgremove keys ...` (its keys and credits).

FastAPI, uvicorn and the model are imported inside `serve`, so `--help` stays fast and the keys
commands work without the `server` extra.
"""

from __future__ import annotations

import json
import sys
from types import ModuleType
from typing import Annotated

import typer

from bgremove.commands import fail, reported_errors
from bgremove.config import DB_ENV
from bgremove.contract import RATE_LIMIT
from bgremove.exits import FAILED
from bgremove.server.store import KeyStore, StoreMissing, key_id_of, open_store, url_password

SERVER_MODULES = {"fastapi", "starlette", "uvicorn", "multipart", "python_multipart",
                  "python-multipart"}  # the last: its pip name, said when starlette lacks it

DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="PATH|URL", envvar=DB_ENV,
    help="The key database: a SQLite file (PATH or sqlite:///PATH), or postgresql://USER@HOST/DB "
    "shared by several servers (the password from PGPASSWORD or ~/.pgpass).",
    show_default="$XDG_DATA_HOME/bgremove/keys.sqlite3", show_envvar=True)]


def serve(
    host: Annotated[str, typer.Option(
        metavar="HOST", help="Address to listen on (0.0.0.0: every interface).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(
        metavar="PORT", help="Port to listen on.", min=1, max=65535)] = 8000,
    db: DbOption = None,
    rate_limit: Annotated[int, typer.Option(
        metavar="N", help="Requests per minute per key, across every server sharing the "
        "database; 0: no limit.", min=0)] = RATE_LIMIT,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", metavar="ORIGIN", show_default=False,
        help="Let browser pages on this origin call the API (repeatable; * for any).")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N", help="Images processed at once.", show_default="as bgremove's --workers",
        min=1)] = None,
    model: Annotated[str | None, typer.Option(
        metavar="NAME|PATH", help="Model name (see `bgremove models list`) or an .onnx file.",
        show_default="u2netp, bundled")] = None,
    replica_timeout: Annotated[float, typer.Option(
        metavar="SECONDS", min=1.0,
        help="A server sharing the database that is silent this long is presumed dead, and the "
        "credits it had reserved are given back.")] = 60.0,
) -> None:
    with reported_errors():
        uvicorn, app_module = _load_server()
        from bgremove.server.http import bind, uvicorn_config

        sock = bind(host, port)  # a taken port fails now, not after loading the model
        store = _open_store(db)
        concurrency = workers or app_module.default_workers()
        # The model is loaded and has run every mode once before the server listens.
        session = app_module.local_session(concurrency, model)
        app_module.warm_up(session)
        app = app_module.create_app(store, rate_limit=rate_limit, max_concurrency=concurrency,
                                    cors_origins=cors_origin or (), session=session,
                                    replica_timeout=replica_timeout)
        server = uvicorn.Server(uvicorn_config(app, log_level="info"))

    _log_json_lines()
    typer.echo(f"bgremove: the API will be at http://{host}:{port}/api/remove-background/ "
               f"(keys: {store.location}; {rate_limit or 'no limit on'} requests per minute per "
               f"key; {concurrency} images at once)", err=True)
    if store.count() == 0:
        typer.echo("bgremove: no API keys yet; create one with: bgremove keys create "
                   "--email you@example.com --credits 100", err=True)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:  # uvicorn's startup failed (its log says why)
        if exc.code:
            fail("the server failed to start (see the messages above)", FAILED)
        raise
    finally:
        session.close()
        store.close()
        sock.close()


def _load_server() -> tuple[ModuleType, ModuleType]:
    """uvicorn and bgremove.server.app, or a UsageError that says how to install them."""
    from bgremove.extras import needs_extra

    with needs_extra("server", SERVER_MODULES, "`bgremove serve`"):
        import uvicorn
        from starlette import formparsers

        from bgremove.server import app as app_module

        if formparsers.multipart is None:  # starlette imports it only if it is there
            raise ModuleNotFoundError(name="python-multipart")
    return uvicorn, app_module


def _log_json_lines() -> None:
    """The access log is one JSON object per line on stderr, as written by the app."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("bgremove.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # A malformed upload is answered with a 400 and logged as one of those lines; the form
    # parser's own warning about it would be a stray plain-text line among them.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)


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
        with _open_store(db) as store:
            key = store.create(email, credits)
            info = store.get(key_id_of(key))
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
            with _open_store(db, create=False) as store:
                keys = store.list()
        except StoreMissing as exc:
            if as_json:
                typer.echo("[]")
            typer.echo(f"bgremove: {exc}", err=True)
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
        with _open_store(db, create=False) as store:
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
        with _open_store(db, create=False) as store:
            info = store.revoke(key_id)
    typer.echo(f"bgremove: revoked key {info.id} ({info.email}).", err=True)


def _credits(n: int) -> str:
    return f"{n} credit" if n == 1 else f"{n} credits"


def _open_store(db: str | None, *, create: bool = True) -> KeyStore:
    password = url_password(db or "")
    if password and any(password in arg for arg in sys.argv):
        typer.echo("bgremove: warning: the database password is on the command line, where "
                   "every user of this machine can read it (ps); put it in PGPASSWORD or "
                   "~/.pgpass instead", err=True)
    return open_store(db, create=create)


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        help="Serve the Background Removal API on this machine's engine.\n\n"
        "The same endpoint, fields, headers and errors as the hosted API.\n\n"
        "Example: bgremove serve --port 8000 --cors-origin https://app.example.com",
    )(serve)
    app.add_typer(keys_app)
