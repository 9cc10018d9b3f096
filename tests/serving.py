"""Run an ASGI app on a real loopback port for the length of a `with` block."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serve_app(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a background thread; yield its base
    URL (`http://127.0.0.1:PORT`) once it accepts connections, and stop it cleanly afterwards."""
    import uvicorn

    from bgremove.server.http import uvicorn_config

    # Bind the socket here and hand it over, so no other process can take the port in between.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError("the test server did not start in time")
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            pass  # it accepts
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`bgremove serve ARGS` in a subprocess on a free loopback port, as an operator runs it."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        import subprocess
        import sys

        from tests.conftest import cli_env

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgremove", "serve", "--port", str(self.port), *args],
            env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stdout = self.stderr = b""

    def wait_ready(self, timeout: float = 120.0) -> ServeProcess:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"bgremove serve exited ({self.proc.returncode}): "
                                   f"{self.stderr.decode(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("bgremove serve did not start in time")
            time.sleep(0.1)

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=30)
        except Exception:
            self.proc.kill()
            self.stdout, self.stderr = self.proc.communicate()


@contextmanager
def serve_processes(count: int, *args: str) -> Iterator[list[ServeProcess]]:
    """`count` replicas of `bgremove serve ARGS`, started together, stopped afterwards."""
    servers: list[ServeProcess] = []
    try:
        servers = [ServeProcess(*args) for _ in range(count)]
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
