"""The README and the reference in docs/ cannot rot: their Python examples run as they are written,
the README's tour runs as written, and every option of every command is documented."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import typer
from PIL import Image

from tests.conftest import ROOT, cli_env
from tests.test_help import COMMANDS

README = (ROOT / "README.md").read_text()
# The README first, then the reference's pages: what a user reads, as one text.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED = "\n".join(page.read_text() for page in PAGES)
EXAMPLES = [(f"{page.relative_to(ROOT)}:{i}", code) for page in PAGES
            for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """A `bgremove serve` app on 127.0.0.1 with one key, for the RemoteSession example."""
    from bgremove.server import create_app
    from bgremove.server.store import open_store
    from tests.serving import serve_app

    store = open_store(tmp_path_factory.mktemp("keys") / "keys.sqlite3")
    key = store.create("docs@example.com", 10)
    with serve_app(create_app(store)) as base:
        yield f"{base}/api/remove-background/", key


def run_example(code: str, cwd, env) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=cwd, env=env,
                          timeout=300)
    assert proc.returncode == 0, f"{code}\n---\n{proc.stderr.decode()}"
    return proc.stdout.decode()


def test_there_are_python_examples():
    assert len(EXAMPLES) >= 6
    assert any(name.startswith("README.md:") for name, _ in EXAMPLES)


@pytest.mark.parametrize("code", [code for _, code in EXAMPLES], ids=[name for name, _ in EXAMPLES])
def test_python_examples_run_as_written(code, tmp_path, api_server):
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    url, key = api_server
    out = run_example(code, tmp_path, cli_env(BGREMOVE_API_URL=url, BGREMOVE_API_KEY=key))
    # What each example promises, checked on what it made.
    if "coffee-cutout.png" in code:
        assert Image.open(tmp_path / "coffee-cutout.png").mode == "RGBA"
        assert out.splitlines()[-1] == "True"
    if "new_session(" in code:
        assert "astronaut.jpg RGBA (512, 512)" in out
        assert Image.open(tmp_path / "chelsea.webp.png").mode == "RGBA"
    if "remove_batch(" in code:
        assert "5 written, 0 failed; any failure: False" in out
        assert len(list((tmp_path / "cutouts").glob("*.png"))) == 5
    if "RemoteSession(" in code:
        assert "b'RIFF' b'WEBP'" in out and "refused: not an image" in out


def options_of(command) -> list[str]:
    names = []
    for param in command.params:
        longs = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
        if isinstance(param, typer.core.TyperOption) and longs and "--help" not in longs:
            names.append(longs)
    return names


@pytest.mark.parametrize("path, command", COMMANDS,
                         ids=[" ".join(p) or "bgremove" for p, _ in COMMANDS])
def test_every_option_is_documented(path, command):
    missing = [" / ".join(longs) for longs in options_of(command)
               if not any(re.search(rf"(?<![\w-]){re.escape(o)}\b", DOCUMENTED) for o in longs)]
    assert not missing, \
        f"`bgremove {' '.join(path)}` options missing from README.md and docs/: {missing}"




def test_ci_runs_the_readmes_set_up_commands_as_written():
    # CI proves the README's set-up works on a fresh machine only if it runs those very lines.
    section = README.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)\n```", section, re.S)
    assert len(commands) == 2 and all("\n" not in command for command in commands)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if line in commands] == commands
    assert "pip install -e . " in commands[0] + " "  # the main job needs no extra
    assert commands[1].endswith("python -m pytest")
    # The tests exercise every extra: the test command installs all of them, and the test tools.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = re.search(r"-e '\.\[(.*?)\]' --group dev ", commands[1]).group(1).split(",")
    assert sorted(extras) == sorted(project["project"]["optional-dependencies"])
    assert "dev" not in project["project"]["optional-dependencies"]
    assert any(tool.startswith("pytest") for tool in project["dependency-groups"]["dev"])


# The tour's commands that run until stopped (a server, a hot folder) have tests of their own
# (test_server.py, test_watch.py, and `serve`'s flags are in its --help test).
RUN_UNTIL_STOPPED = ("bgremove serve", "--watch")


def tour_commands() -> list[str]:
    section = README.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```\n(.*?)```", section, re.S)]


def test_the_tour_is_one_command_per_job():
    commands = tour_commands()
    assert len(commands) >= 8 and all("\n" not in command for command in commands)
    assert any("--check" in command for command in commands)


@pytest.mark.parametrize("command", [c for c in tour_commands()
                                     if not any(long in c for long in RUN_UNTIL_STOPPED)])
def test_the_tours_commands_run_as_written(command, tmp_path, api_server, samples):
    # The folders and the photo the tour names, each with a small photo in it, and `bgremove` on
    # the PATH as this checkout; the API key placeholder is a real key of a local server.
    photo = Image.open(samples / "astronaut.jpg")
    photo.thumbnail((128, 128))
    for folder in re.findall(r"(\w+)/ -o", command):
        (tmp_path / folder).mkdir()
        photo.save(tmp_path / folder / "a.jpg")
    photo.save(tmp_path / "photo.jpg")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bgremove").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bgremove "$@"\n')
    (bin_dir / "bgremove").chmod(0o755)
    url, key = api_server
    env = cli_env(BGREMOVE_API_URL=url)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    proc = subprocess.run(["bash", "-c", command.replace("sk-...", key)], cwd=tmp_path, env=env,
                          capture_output=True, timeout=300)
    outputs = re.findall(r"(?:-o|>) (\S+)", command)
    assert outputs, f"the tour's command names no output: {command}"
    if "--check" in command:  # nothing made yet: it lists what is missing, makes nothing
        assert proc.returncode == 1 and b"missing: " in proc.stdout, proc.stderr.decode()
        assert not any((tmp_path / out).exists() for out in outputs)
        return
    assert proc.returncode == 0, proc.stderr.decode()
    canvas = re.search(r"--canvas (\d+)x(\d+)", command)
    size = (int(canvas[1]), int(canvas[2])) if canvas else photo.size
    for out in outputs:
        made = [tmp_path / out] if not out.endswith("/") else [*(tmp_path / out).iterdir()]
        assert made and all(Image.open(path).size == size for path in made), out
