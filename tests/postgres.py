"""A real PostgreSQL server for the tests: initdb'd in a temporary folder, listening on 127.0.0.1.

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user (which
the Debian packages create). fsync is off: the data is thrown away afterwards. The superuser has a
password and connections over TCP must give it (scram-sha-256), so the tests go through the same
password lookup (a pgpass file, PGPASSWORD) that a deployment does.

Without PostgreSQL the tests that need it are skipped, except in CI (CI=true, as CI services set
it, or BGREMOVE_REQUIRE_POSTGRES=1): there they fail, so a broken set-up cannot pass unnoticed.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "bgremove"
DATABASE = "bgremove_test"


def required() -> bool:
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get("BGREMOVE_REQUIRE_POSTGRES") == "1")


def find_bin() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, else the newest Debian/Ubuntu install."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    password: str
    passfile: Path  # a pgpass file with the password, as a deployment would have one

    def url(self, database: str = DATABASE, **params: str) -> str:
        """A URL without the password (libpq finds it in PGPASSFILE or PGPASSWORD)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}" + (
            f"?{query}" if query else "")


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """Start a throw-away server; stop it and delete its data afterwards."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in "
                           "/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="bgremove-pg-"))
    private = Path(tempfile.mkdtemp(prefix="bgremove-pgpass-"))  # the client's side
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    password = secrets.token_urlsafe(16)
    data, log = root / "data", root / "server.log"
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if as_postgres:
        shutil.chown(pwfile, "postgres", "postgres")

    def run(*args: str | Path, timeout: float = 120) -> None:
        subprocess.run([*as_postgres, *map(str, args)], check=True, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    try:
        run(bin_dir / "initdb", "-D", data, "-U", USER, "--pwfile", pwfile, "-E", "UTF8",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-instructions")
        pwfile.unlink()
        for attempt in range(3):  # a free port can be taken before the server binds it
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
                       " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                       " -c max_connections=200")
            try:
                run(bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60",
                    "start")
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
        passfile = private / "pgpass"
        passfile.write_text(f"127.0.0.1:{port}:*:{USER}:{password}\n")
        passfile.chmod(0o600)  # libpq ignores a pgpass file others can read
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=USER, password=password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield Postgres("127.0.0.1", port, password, passfile)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stdout or b"").decode(errors="replace")
        if log.exists():
            detail += log.read_text(errors="replace")
        raise RuntimeError(f"PostgreSQL did not start: {detail[-2000:]}") from None
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
