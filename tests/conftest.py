"""Shared fixtures: the sample photos and a way to run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


# The files that take longest (each a minute to ten seconds on 2 cores), run first: the two
# workers (pyproject.toml) then share out the short files at the end and finish together.
HEAVY_FIRST = ["test_cluster", "test_replicas", "test_remote_cli", "test_new_user", "test_matte",
               "test_stamps", "test_frames", "test_server", "test_page", "test_batching",
               "test_watch"]


def pytest_configure(config: pytest.Config) -> None:
    # Each xdist worker gets its own share of the cores, as a user running two jobs side by side
    # would with `taskset`: bgremove sizes its inference threads and pools to its CPU affinity,
    # and the subprocesses a test starts inherit it. Unpinned, both workers' inference threads
    # spin on the same cores and the suite spends a fifth of its CPU waiting on itself.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and workers > 1 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= workers:
            share = len(cores) // workers
            index = int(worker[2:]) % workers
            os.sched_setaffinity(0, cores[index * share:(index + 1) * share])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The subprocess imports this checkout, whether or not the package is installed.
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # Hermetic: no colour or terminal overrides, no BGREMOVE_* settings and no config file from
    # the machine running the tests.
    for name in [*env]:
        if name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE") or (
                name.startswith("BGREMOVE_")):
            del env[name]
    env["XDG_CONFIG_HOME"] = str(ROOT / "tests" / "no-config-here")
    env.update(extra)
    return env


def run_cli(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `bgremove ARGS...` as a user would, capturing stdout and stderr as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "bgremove", *args],
        input=input,
        capture_output=True,
        env=env or cli_env(),
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL on 127.0.0.1 for the whole session (tests/postgres.py), its password in
    a pgpass file named by PGPASSFILE. Skipped where PostgreSQL is missing, failed in CI."""
    from contextlib import ExitStack

    from tests.postgres import required, running_postgres

    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except Exception as exc:
            if required():
                pytest.fail(f"PostgreSQL is required (CI) but did not start: {exc}")
            pytest.skip(f"PostgreSQL did not start: {exc}")
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("PGPASSFILE", str(server.passfile))
        patch.delenv("PGPASSWORD", raising=False)
        yield server


@pytest.fixture
def pg_url(postgres) -> str:
    """A URL to an empty schema of its own (no password in it)."""
    import secrets

    import psycopg

    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres.url()) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return postgres.url(options=f"-csearch_path%3D{schema}")
