"""The API's OpenAPI description (served by FastAPI at /openapi.json) and its page at /docs.

The endpoint reads its multipart form itself (after the key, rate and credit checks, and with a
running byte count), so FastAPI cannot infer the form from the function's parameters: the request
body is described here instead, from the same enums and defaults `RemovalOptions.from_form` uses.

/docs is a plain HTML page rendered from that description on the server: FastAPI's Swagger UI and
ReDoc load their scripts from a CDN, which a self-hosted API on an offline network cannot reach.
Any OpenAPI tool (Swagger Editor, Postman, openapi-generator) can load /openapi.json instead.
"""

from __future__ import annotations

import html
from typing import Any

from bgremove.contract import MAX_FILE_BYTES, MAX_SIDE
from bgremove.options import API_OUTPUT_FORMATS, Mode, RemovalOptions

DESCRIPTION = (
    "The Background Removal API, served by `bgremove serve` on its local engine: the same "
    "endpoint, form fields, headers and errors as the hosted API. Each image returned costs one "
    "credit; a request that fails costs nothing."
)
ENDPOINT = (
    "Upload an image (JPEG, PNG or WebP, up to 10 MB and 4000x4000 pixels) as multipart/form-data "
    "with the image in `file`; the answer is the cut-out as PNG or WebP."
)

_BINARY = {"type": "string", "format": "binary"}
_HEADERS = {
    "x-user-email": "The email of the key.",
    "x-user-credits": "Credits left after this request.",
    "x-request-id": "Unique id of this request (on every response, errors included).",
    "x-processing-time": "Milliseconds from the upload being received to the image being ready.",
    "X-RateLimit-Limit": "Requests allowed per key in the rate window.",
    "X-RateLimit-Remaining": "Requests left in the window.",
    "X-RateLimit-Reset": "Seconds until a used slot frees up.",
}


def request_body() -> dict[str, Any]:
    """`openapi_extra` for the endpoint: the multipart form, with enums and defaults."""
    defaults = RemovalOptions()

    def flag(default: bool, text: str) -> dict[str, Any]:
        return {"type": "boolean", "default": default, "description": text}

    form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {**_BINARY, "description": (
                f"The image: JPEG, PNG or WebP by content, at most {MAX_FILE_BYTES // 2**20} MB "
                f"and {MAX_SIDE}x{MAX_SIDE} pixels.")},
            "mode": {"type": "string", "enum": [m.value for m in Mode],
                     "default": defaults.mode.value,
                     "description": "Speed/quality trade-off."},
            "outputFormat": {"type": "string", "enum": [f.value for f in API_OUTPUT_FORMATS],
                             "default": defaults.output_format.value,
                             "description": "The format of the answer."},
            "includeMask": flag(defaults.include_mask,
                                "Keep the alpha mask (false: the background is filled white)."),
            "smoothEdges": flag(defaults.smooth_edges, "Smooth the mask's edges."),
            "preserveShadows": flag(defaults.preserve_shadows,
                                    "Keep the subject's shadow, semi-transparent."),
        },
    }
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": form}}}}


def _error(description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What went wrong."}},
        }}},
    }
    if headers:
        answer["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                             for name, text in headers.items()}
    return answer


def responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "The cut-out, in the requested format.",
            "content": {f.mime_type: {"schema": _BINARY} for f in API_OUTPUT_FORMATS},
            "headers": {name: {"description": text, "schema": {"type": "string"}}
                        for name, text in _HEADERS.items()},
        },
        400: _error("Missing or invalid field, or a file that is not an image the API takes."),
        401: _error("Missing, unknown or revoked API key."),
        403: _error("The key has no credits left."),
        429: _error("Rate limit exceeded.", {"Retry-After": "Seconds to wait before retrying."}),
        500: _error("Processing failed; the message gives the request id."),
    }


def _schema_type(schema: dict[str, Any]) -> str:
    text = schema.get("format") == "binary" and "file" or schema.get("type", "")
    if "enum" in schema:
        text += ": " + " | ".join(str(v) for v in schema["enum"])
    return text


def docs_page(spec: dict[str, Any]) -> str:
    """The description as one self-contained HTML page (no script, no external resource)."""
    e = html.escape
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(info.get('title', 'API'))}</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px "
        "solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}code{background:"
        "#f4f4f4;padding:0 .2rem}h2{border-top:1px solid #ccc;padding-top:1rem}</style>",
        "</head><body>",
        f"<h1>{e(info.get('title', 'API'))} <small>{e(info.get('version', ''))}</small></h1>",
        f"<p>{e(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
        f"{e(spec.get('openapi', ''))}).</p>",
    ]
    schemes = spec.get("components", {}).get("securitySchemes", {})
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code> "
                         f"{e(op.get('summary', ''))}</h2>")
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            for requirement in op.get("security", []):
                for name in requirement:
                    scheme = schemes.get(name, {})
                    parts.append(f"<p>Authentication: header <code>{e(scheme.get('name', name))}"
                                 f"</code>. {e(scheme.get('description', ''))}</p>")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                schema = content.get("schema", {})
                required = set(schema.get("required", []))
                parts.append(f"<p>Request body: <code>{e(media)}</code></p><table>"
                             "<tr><th>field</th><th>type</th><th>default</th>"
                             "<th>description</th></tr>")
                for name, field in schema.get("properties", {}).items():
                    default = "required" if name in required else str(field.get("default", ""))
                    if isinstance(field.get("default"), bool):
                        default = str(field["default"]).lower()
                    parts.append(f"<tr><td><code>{e(name)}</code></td>"
                                 f"<td>{e(_schema_type(field))}</td><td>{e(default)}</td>"
                                 f"<td>{e(field.get('description', ''))}</td></tr>")
                parts.append("</table>")
            parts.append("<table><tr><th>status</th><th>content</th><th>description</th>"
                         "<th>headers</th></tr>")
            for status, answer in op.get("responses", {}).items():
                media = ", ".join(answer.get("content", {})) or "-"
                headers = ", ".join(answer.get("headers", {})) or "-"
                parts.append(f"<tr><td>{e(str(status))}</td><td><code>{e(media)}</code></td>"
                             f"<td>{e(answer.get('description', ''))}</td>"
                             f"<td>{e(headers)}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
