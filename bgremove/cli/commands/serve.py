"""`bgremove serve`: the Background Removal API on this machine, with the keys of `bgremove keys`.

FastAPI, uvicorn and the model are imported inside the command, so `--help` stays fast and the
keys commands work without the `server` extra.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated

import typer

from bgremove.cli.commands import fail, reported_errors
from bgremove.cli.commands.keys import DbOption, open_key_store
from bgremove.cli.exits import FAILED, in_flags
from bgremove.cli.params import Given, SectionedCommand, takes_settings
from bgremove.contract import RATE_LIMIT

SERVER = "Server"  # the --help section of the server's own options
SERVER_MODULES = {"fastapi", "starlette", "uvicorn", "multipart", "python_multipart",
                  "python-multipart"}  # the last: its pip name, said when starlette lacks it


@takes_settings("model", "model_type", "precision", "device", "workers", "threads")
def serve(
    given: Given,
    host: Annotated[str, typer.Option(
        metavar="HOST", help="Address to listen on (0.0.0.0: every interface).",
        rich_help_panel=SERVER)] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        metavar="PORT", help="Port to listen on.", min=1, max=65535,
        rich_help_panel=SERVER)] = 8000,
    db: DbOption = None,
    # Not the `rate_limit` setting, which paces this machine's requests to an API: the limit
    # this server puts on its clients.
    requests_per_key: Annotated[int, typer.Option(
        "--rate-limit", metavar="N", help="Requests per minute per key, across every server "
        "sharing the database; 0: no limit.", min=0, rich_help_panel=SERVER)] = RATE_LIMIT,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", metavar="ORIGIN", show_default=False,
        help="Let browser pages on this origin call the API (repeatable; * for any).",
        rich_help_panel=SERVER)] = None,
    replica_timeout: Annotated[float, typer.Option(
        metavar="SECONDS", min=1.0,
        help="A server sharing the database that is silent this long is presumed dead, and the "
        "credits it had reserved are given back.", rich_help_panel=SERVER)] = 60.0,
    no_ui: Annotated[bool, typer.Option(
        "--no-ui", help="Serve the API only: no web page for people at /.",
        rich_help_panel=SERVER)] = False,
) -> None:
    with reported_errors():
        settings = given.load()
        uvicorn, app_module = _load_server()
        from bgremove.server import sizing
        from bgremove.server.http import bind, uvicorn_config

        sock = bind(host, port)  # a taken port fails now, not after loading the model
        store = open_key_store(db)
        concurrency = settings.workers or sizing.default_workers(settings.device)
        # The model is loaded and has run every mode once before the server listens.
        session = sizing.local_session(concurrency, settings.model, settings.precision,
                                       settings.model_type, device=settings.device,
                                       threads=settings.threads)
        if session.device_warning:  # a GPU asked for and missing; an int8 build failing its check
            typer.echo(f"bgremove: warning: {in_flags(session.device_warning)}", err=True)
        sizing.warm_up(session)
        app = app_module.create_app(store, rate_limit=requests_per_key, max_concurrency=concurrency,
                                    cors_origins=cors_origin or (), session=session,
                                    replica_timeout=replica_timeout, ui=not no_ui)
        server = uvicorn.Server(uvicorn_config(app, log_level="info"))

    _log_json_lines()
    if not no_ui:
        typer.echo(f"bgremove: the page for people will be at http://{host}:{port}/", err=True)
    typer.echo(f"bgremove: the API will be at http://{host}:{port}/api/remove-background/ "
               f"(keys: {store.location}; {requests_per_key or 'no limit on'} requests per minute "
               f"per key; {concurrency} images at once on {session.model_name})", err=True)
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


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        cls=SectionedCommand,
        help="Serve the Background Removal API on this machine's engine.\n\n"
        "The same endpoint, fields, headers and errors as the hosted API.\n\n"
        "Example: bgremove serve --port 8000 --cors-origin https://app.example.com",
    )(serve)
