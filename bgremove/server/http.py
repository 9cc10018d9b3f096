"""The HTTP layer under the app: uvicorn, its listening socket, and its answer to bad requests."""

from __future__ import annotations

import errno
import json
import socket
import uuid
from typing import Any

import h11
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from bgremove.errors import Option, SetupError

BAD_REQUEST = ("malformed HTTP request: a header has characters HTTP does not allow (a NUL or "
               "another control character, e.g. in x-api-key), or the request line is broken")


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse (a NUL byte in a header, say)
    with the API's JSON error and a request id rather than a plain-text 400.

    Such a request never reaches the app, so this is the only place to give it the API's shape.
    The message is fixed: h11's own names the offending header value, which may be the key.
    """

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": BAD_REQUEST}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", uuid.uuid4().hex.encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def uvicorn_config(app: Any, **options: Any) -> Config:
    """The uvicorn settings of `bgremove serve` (and of the tests' servers)."""
    return Config(app, http=JsonErrorsH11Protocol, access_log=False, **options)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, not yet listening, or a SetupError that says why not.

    Done before the model is loaded, so a taken port fails in a moment rather than after it;
    and handed to uvicorn, so no one can take the port in between. Connections are refused until
    the server listens, once the model is warm.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SetupError(Option("host"), f" {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a restarted server may rebind while old connections sit in TIME_WAIT.
        # (On Linux this never lets two servers share a port.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise SetupError(f"port {port} is already in use on {host} (another server, or "
                             "another bgremove serve?): stop it, or choose another ",
                             Option("port")) from None
        if exc.errno == errno.EACCES:
            raise SetupError(f"not allowed to listen on {where} (ports below 1024 need "
                             "privileges): choose another ", Option("port")) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SetupError(Option("host"), f" {host} is not an address of this machine") from None
        raise SetupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
