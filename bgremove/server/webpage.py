"""The page at `/`: a drag-and-drop front for people who do not use a shell (`serve --no-ui` turns
it off).

The page is plain HTML, CSS and JavaScript, shipped as package data in `page/` beside this module:
no build step, no CDN, nothing from another origin, so it works on an offline network. It calls
the API it is served beside, with the key the user types (kept in the tab's sessionStorage), and
builds its option controls from /openapi.json, so it offers exactly the fields the endpoint takes.

Every answer carries a Content-Security-Policy that allows only this origin: the page's own
script and style files, images from blob: URLs (the cut-outs) and data: URLs, requests to this
origin only, and no inline script, so text the page shows (file names, error messages) could not
run even if it were ever inserted as markup (the script only ever sets textContent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import FastAPI
from starlette.responses import Response

# The page's files, by the name it is served under (/page/NAME), with their media types.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "zip.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    # The key form is handled by the script; nothing is ever submitted to a URL.
    "form-action 'none'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release's page is picked up at once; the files are small.
    "Cache-Control": "no-cache",
}

# Said in the OpenAPI description: the page is there, and it is not part of the API.
DESCRIPTION = (
    " A web page for people, served at `/` (unless the server turns it off), uploads "
    "images through this endpoint with the user's key; it is not an API operation."
)


def _read(name: str) -> bytes:
    return resources.files("bgremove.server").joinpath("page").joinpath(name).read_bytes()


def add_page(app: FastAPI) -> None:
    """Serve the page at / and its files at /page/NAME, none of them in the OpenAPI paths."""
    files = {name: (_read(name), media) for name, media in ASSETS.items()}
    index = _read("index.html")

    async def page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=HEADERS)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)

    for name, (body, media) in files.items():
        app.add_api_route(f"/page/{name}", _asset(body, media), methods=["GET"],
                          include_in_schema=False)


def _asset(body: bytes, media: str) -> Callable[[], Awaitable[Response]]:
    # A closure, not default arguments: FastAPI would take those for query parameters.
    async def asset() -> Response:
        return Response(body, media_type=media, headers=HEADERS)

    return asset
