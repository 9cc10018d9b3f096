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

from bgremove.cli.app import app
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
    assert keys(db, "create", "--email", "ops@example.com", "--credits", "1").exit_code == 0
    unknown = keys(db, "revoke", "0123456789ab")
    assert unknown.exit_code == 2 and "no key with id" in unknown.stderr
    assert keys(db, "add-credits", "0123456789ab", "5").exit_code == 2
    bad_email = keys(db, "create", "--email", "not an email", "--credits", "1")
    assert bad_email.exit_code == 2 and "email" in bad_email.stderr
    assert bad_email.stdout == ""
    assert keys(db, "create", "--email", "a@b.example", "--credits", "-1").exit_code == 2
    listed = json.loads(keys(db, "list", "--json").stdout)  # nothing was created or changed
    assert [(k["email"], k["credits"], k["active"]) for k in listed] == [
        ("ops@example.com", 1, True)]


def test_a_database_that_does_not_exist_is_not_made_by_reading_it(tmp_path):
    db = tmp_path / "typo" / "keys.sqlite3"
    listed = keys(db, "list", "--json")
    assert listed.exit_code == 0 and listed.stdout.strip() == "[]"
    assert f"no key database at {db}" in listed.stderr
    for args in (["revoke", "0123456789ab"], ["add-credits", "0123456789ab", "5"]):
        refused = keys(db, *args)
        assert refused.exit_code == 5 and f"no key database at {db}" in refused.stderr
    assert not (tmp_path / "typo").exists()


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
        malformed = httpx.post(url + "/api/remove-background", headers={
            "x-api-key": key, "content-type": "multipart/form-data; boundary=xx"},
            content=b"garbage")
        assert malformed.status_code == 400
    finally:
        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=30)
    log = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    posted = [line for line in log if line["method"] == "POST"]
    assert [line["status"] for line in posted] == [200, 400]
    assert "boundary" not in stderr.decode()  # no stray line from the form parser
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


def test_serve_on_a_busy_port_fails_at_once_with_exit_code_5(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A model that does not exist: were it loaded first, this would be a model error (2).
        proc = run_cli("serve", "--port", str(port), "--db", str(tmp_path / "k.sqlite3"),
                       "--model", str(tmp_path / "missing.onnx"), timeout=60)
    assert proc.returncode == 5
    stderr = proc.stderr.decode()
    assert f"port {port} is already in use" in stderr and "--port" in stderr
    assert "Traceback" not in stderr and "missing.onnx" not in stderr


def test_keys_against_postgres(postgres, pg_url):
    created = run_cli("keys", "create", "--email", "pg@example.com", "--credits", "2",
                      "--db", pg_url)
    assert created.returncode == 0, created.stderr.decode()
    key = created.stdout.decode().strip()
    assert KEY.fullmatch(key)
    key_id = key[4:16]
    env = cli_env(BGREMOVE_DB=pg_url)  # the environment variable works as --db does
    assert run_cli("keys", "add-credits", key_id, "3", env=env).returncode == 0
    assert run_cli("keys", "revoke", key_id, env=env).returncode == 0
    [record] = json.loads(run_cli("keys", "list", "--json", env=env).stdout)
    assert (record["id"], record["credits"], record["active"]) == (key_id, 5, False)
    assert record["created_at"].endswith("+00:00")


def test_postgres_password_from_pgpassword_never_shown(postgres, pg_url):
    no_file = {"PGPASSFILE": "/nonexistent"}
    # No password anywhere: refused, a setup error (5).
    refused = run_cli("keys", "list", "--db", pg_url, env=cli_env(**no_file))
    assert refused.returncode == 5 and "cannot open the key database" in refused.stderr.decode()
    # PGPASSWORD, as libpq reads it.
    ok = run_cli("keys", "list", "--db", pg_url,
                 env=cli_env(PGPASSWORD=postgres.password, **no_file))
    assert ok.returncode == 0, ok.stderr.decode()
    # In the URL on the command line: works, with a warning, and never echoed.
    with_password = pg_url.replace("bgremove@", f"bgremove:{postgres.password}@")
    warned = run_cli("keys", "list", "--db", with_password, env=cli_env(**no_file))
    assert warned.returncode == 0
    assert "warning: the database password is on the command line" in warned.stderr.decode()
    wrong = with_password.replace(postgres.password, "not-the-password-123")
    failed = run_cli("keys", "list", "--db", wrong, env=cli_env(**no_file))
    assert failed.returncode == 5
    assert "not-the-password-123" not in failed.stderr.decode() + failed.stdout.decode()
    assert "***" in failed.stderr.decode()


def test_database_mistakes_are_clear(tmp_path):
    unreachable = run_cli("keys", "list", "--db", "postgresql://nobody@127.0.0.1:1/keys")
    assert unreachable.returncode == 5
    assert "cannot open the key database postgresql://nobody@127.0.0.1:1/keys" in (
        unreachable.stderr.decode())
    unknown = run_cli("keys", "list", "--db", "mysql://root@localhost/keys")
    assert unknown.returncode == 2 and "unknown database" in unknown.stderr.decode()
    url = f"sqlite:///{tmp_path}/via-url.sqlite3"
    assert run_cli("keys", "create", "--email", "u@example.com", "--credits", "1",
                   "--db", url).returncode == 0
    assert (tmp_path / "via-url.sqlite3").is_file()


def test_postgres_without_the_extra_says_how_to_get_it(tmp_path):
    fake = tmp_path / "fake"
    (fake / "psycopg").mkdir(parents=True)
    (fake / "psycopg" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    env = cli_env()
    env["PYTHONPATH"] = f"{fake}:{env['PYTHONPATH']}"
    proc = run_cli("keys", "list", "--db", "postgresql://u@127.0.0.1:1/keys", env=env)
    assert proc.returncode == 2
    assert "pip install 'bgremove[postgres]'" in proc.stderr.decode()
