"""`bgremove keys ...` and `bgremove serve` from the command line, as an operator uses them."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner, Result

from bgremove.cli import app
from bgremove.server import create_app
from tests.conftest import cli_env, run_cli
from tests.serving import serve_app

KEY = re.compile(r"bgr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def keys(db, *args: str) -> Result:
    """`bgremove keys ARGS --db DB`, in-process (the commands import nothing heavy)."""
    return CliRunner().invoke(app, ["keys", *args, "--db", str(db)])


def test_create_list_add_credits_revoke(tmp_path, samples):
    db = tmp_path / "keys.sqlite3"
    # As a user types it, in a real process.
    created = run_cli("keys", "create", "--email", "ops@example.com", "--credits", "2",
                      "--db", str(db))
    assert created.returncode == 0, created.stderr.decode()
    key = created.stdout.decode().strip()
    assert KEY.fullmatch(key)  # stdout is the key alone, ready for KEY=$(...)
    key_id = key[4:16]
    assert key_id in created.stderr.decode() and key not in created.stderr.decode()

    listed = keys(db, "list")
    assert listed.exit_code == 0
    assert key_id in listed.stdout and "ops@example.com" in listed.stdout
    assert "active" in listed.stdout
    assert key[17:] not in listed.stdout + listed.stderr  # nor any part of the secret

    added = keys(db, "add-credits", key_id, "40")
    assert added.exit_code == 0 and "42 credits" in added.stderr

    # The key the CLI printed works against the server, until the CLI revokes it.
    with serve_app(create_app(db)) as url:
        ok = httpx.post(url + "/api/remove-background/", headers={"x-api-key": key},
                        files={"file": ("c.png", (samples / "chelsea.webp").read_bytes())},
                        data={"mode": "fast"}, timeout=120)
        assert ok.status_code == 200 and ok.headers["x-user-credits"] == "41"
        assert keys(db, "revoke", key_id).exit_code == 0
        refused = httpx.post(url + "/api/remove-background/", headers={"x-api-key": key},
                             files={"file": ("c.png", b"\x89PNG\r\n\x1a\n")})
        assert refused.status_code == 401

    [record] = json.loads(keys(db, "list", "--json").stdout)
    assert record["id"] == key_id and record["credits"] == 41 and record["used"] == 1
    assert record["active"] is False and record["revoked_at"]
    assert key not in json.dumps(record)


def test_mistakes_are_reported_with_exit_code_2(tmp_path):
    db = tmp_path / "keys.sqlite3"
    unknown = keys(db, "revoke", "0123456789ab")
    assert unknown.exit_code == 2 and "no key with id" in unknown.stderr
    assert keys(db, "add-credits", "0123456789ab", "5").exit_code == 2
    bad_email = keys(db, "create", "--email", "not an email", "--credits", "1")
    assert bad_email.exit_code == 2 and "email" in bad_email.stderr
    assert bad_email.stdout == ""
    assert keys(db, "create", "--email", "a@b.example", "--credits", "-1").exit_code == 2
    assert keys(db, "list", "--json").stdout.strip() == "[]"  # nothing was created


def test_database_location_from_env_and_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("BGREMOVE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--email", "x@example.com", "--credits", "1"])
    assert made.exit_code == 0, made.stderr
    assert (tmp_path / "xdg" / "bgremove" / "keys.sqlite3").is_file()

    monkeypatch.setenv("BGREMOVE_DB", str(tmp_path / "elsewhere.sqlite3"))
    runner.invoke(app, ["keys", "create", "--email", "y@example.com", "--credits", "1"])
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert [k["email"] for k in listed] == ["y@example.com"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_end_to_end(tmp_path, samples):
    db = tmp_path / "keys.sqlite3"
    key = keys(db, "create", "--email", "cli@example.com", "--credits", "3").stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bgremove", "serve", "--port", str(port), "--db", str(db),
         "--rate-limit", "50", "--workers", "1", "--cors-origin", "https://a.example"],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        response = httpx.post(url + "/api/remove-background", headers={"x-api-key": key},
                              files={"file": ("c.jpg", (samples / "rocket.jpg").read_bytes())},
                              data={"mode": "fast", "outputFormat": "png"}, timeout=120)
        assert response.status_code == 200
        assert response.headers["x-user-credits"] == "2"
        assert response.headers["x-ratelimit-limit"] == "50"
    finally:
        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=30)
    log = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    posted = [line for line in log if line["method"] == "POST"]
    assert len(posted) == 1 and posted[0]["status"] == 200
    assert posted[0]["request_id"] == response.headers["x-request-id"]
    assert posted[0]["key_id"] == key[4:16]
    assert key not in stderr.decode() and stdout == b""


def test_serve_without_the_server_extra_says_how_to_get_it(tmp_path):
    fake = tmp_path / "fake"
    (fake / "uvicorn").mkdir(parents=True)
    (fake / "uvicorn" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n")
    env = cli_env()
    env["PYTHONPATH"] = f"{fake}:{env['PYTHONPATH']}"
    proc = run_cli("serve", "--db", str(tmp_path / "k.sqlite3"), env=env)
    assert proc.returncode == 2
    assert "pip install 'bgremove[server]'" in proc.stderr.decode()
    # Managing keys needs no extra.
    assert run_cli("keys", "list", "--db", str(tmp_path / "k.sqlite3"), env=env).returncode == 0


@pytest.mark.parametrize("command", [["serve"], ["keys"], ["keys", "create"], ["keys", "list"],
                                     ["keys", "add-credits"], ["keys", "revoke"]])
def test_every_command_has_a_description_and_an_example(command):
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example: bgremove " + " ".join(command) in result.output
