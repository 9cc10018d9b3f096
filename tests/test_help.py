"""Every command and sub-command, including ones added later, explains itself: a one-line
description that fits the command list, an example, and where its reference lives in docs/.
`--help` stays instant."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from bgremove.cli.app import app
from tests.conftest import ROOT as REPOSITORY
from tests.conftest import cli_env


def walk(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = list(walk(ROOT))


def test_the_walk_finds_the_sub_commands():
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "remove", "config", "config show"} <= paths


@pytest.mark.parametrize("path, command", COMMANDS,
                         ids=[" ".join(p) or "bgremove" for p, _ in COMMANDS])
def test_help_has_a_one_line_description_and_an_example(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="bgremove", terminal_width=80)
    assert result.exit_code == 0, result.output
    first = (command.help or "").strip().split("\n\n")[0]
    assert first and "\n" not in first, f"{path}: the first paragraph is the one-line description"
    assert first in " ".join(result.output.split()), "the description is shown"
    assert re.search(r"^\s*Example: .*\bbgremove\b", result.output, re.M), f"{path}: no Example:"


@pytest.mark.parametrize("path, command", COMMANDS,
                         ids=[" ".join(p) or "bgremove" for p, _ in COMMANDS])
def test_help_ends_with_where_the_reference_lives(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="bgremove", terminal_width=80)
    last = result.output.rstrip().splitlines()[-1].strip()  # one line, even at 80 columns
    where = re.fullmatch(r"Reference: (.+?) in bgremove's source distribution\.", last)
    assert where, f"`bgremove {' '.join(path)} --help` ends with {last!r}"
    if path:  # a command's own page, not the whole reference
        assert re.fullmatch(r"docs/[\w-]+\.md", where[1]), where[1]
    assert all((REPOSITORY / part).exists() for part in where[1].split(" and "))


@pytest.mark.parametrize("path, group", [(p, c) for p, c in COMMANDS if hasattr(c, "commands")])
def test_command_lists_show_whole_descriptions(path, group):
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80)
    listing = result.output.split("Commands:")[1]
    assert "..." not in listing, f"a description in `{' '.join(('bgremove', *path))} --help` " \
                                 "is cut short: make its first line shorter"


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_does_not_load_the_heavy_modules(flag):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bgremove", flag],
                          capture_output=True, text=True, env=cli_env())
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "bgremove.cli.app" in imported
    assert not imported & {"numpy", "onnxruntime", "PIL.Image", "scipy", "rembg", "isal",
                                "dask", "distributed"}
