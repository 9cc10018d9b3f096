"""The real command line, run inside the test process.

`run_cli` (conftest.py) starts a Python process per call: right where a test is about the process
itself (signals, a terminal, what reaches the real stdout, the exit status the shell sees), and
half a second of start-up each time everywhere else. `invoke` runs the same Typer app, with the
same hermetic environment, in this process and answers in the same shape (return code, stdout and
stderr as bytes), so a test can switch without changing a single assertion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import cli_env


@contextmanager
def _as_a_fresh_process(env: dict[str, str], cwd: Path | None) -> Iterator[None]:
    """The environment, working folder and signal handlers a subprocess would start with,
    given back afterwards (a command installs its own Ctrl-C handlers)."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    os.environ.clear()
    os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)


def invoke(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """`bgremove ARGS...` in this process, as `run_cli` runs it in a subprocess."""
    from bgremove.cli.app import app

    with _as_a_fresh_process(env or cli_env(), cwd):
        result = CliRunner().invoke(app, list(args), input=input, prog_name="bgremove")
    stderr = result.stderr_bytes
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What the real command would print: the traceback, and exit status 1.
        stderr += "".join(traceback.format_exception(result.exception)).encode()
    return subprocess.CompletedProcess(["bgremove", *args], result.exit_code,
                                       result.stdout_bytes, stderr)
