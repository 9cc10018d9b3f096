"""`bgremove serve`: the Background Removal API on this machine, with the keys of `bgremove keys`.

FastAPI, uvicorn and the model are imported inside the command, so `--help` stays fast and the
keys commands work without the `server` extra.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated

import typer

from bgremove.commands import fail, reported_errors
from bgremove.commands.keys import DbOption, open_key_store
from bgremove.contract import RATE_LIMIT
from bgremove.exits import FAILED, in_flags
from bgremove.precision import Precision

SERVER_MODULES = {"fastapi", "starlette", "uvicorn", "multipart", "python_multipart",
                  "python-multipart"}  # the last: its pip name, said when starlette lacks it


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
    precision: Annotated[Precision, typer.Option(
        help="The bundled model's arithmetic: int8 is its quantised build, about twice as fast "
        "on CPUs with VNNI or AMX; auto: int8 there, checked against fp32 as it loads; fp32 "
        "elsewhere.", case_sensitive=False)] = Precision.auto,
    replica_timeout: Annotated[float, typer.Option(
        metavar="SECONDS", min=1.0,
        help="A server sharing the database that is silent this long is presumed dead, and the "
        "credits it had reserved are given back.")] = 60.0,
) -> None:
    with reported_errors():
        uvicorn, app_module = _load_server()
        from bgremove.server import sizing
        from bgremove.server.http import bind, uvicorn_config

        sock = bind(host, port)  # a taken port fails now, not after loading the model
        store = open_key_store(db)
        concurrency = workers or sizing.default_workers()
        # The model is loaded and has run every mode once before the server listens.
        session = sizing.local_session(concurrency, model, precision)
        if session.device_warning:  # a GPU asked for and missing; an int8 build failing its check
            typer.echo(f"bgremove: warning: {in_flags(session.device_warning)}", err=True)
        sizing.warm_up(session)
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


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        help="Serve the Background Removal API on this machine's engine.\n\n"
        "The same endpoint, fields, headers and errors as the hosted API.\n\n"
        "Example: bgremove serve --port 8000 --cors-origin https://app.example.com",
    )(serve)
