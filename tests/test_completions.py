"""Shell completion: the committed scripts are what the CLI generates, and they work."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env

FILES = {"bash": "bgremove.bash", "zsh": "_bgremove", "fish": "bgremove.fish"}
REGENERATE = "python scripts/update_completions.py"


def bgremove_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment where `bgremove` runs this checkout, as an installed script would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "bgremove"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bgremove "$@"\n')
    script.chmod(0o755)
    env = cli_env(HOME=str(tmp_path / "home"))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


@pytest.mark.parametrize("shell", FILES)
def test_committed_script_matches_the_cli(shell):
    generated = subprocess.run([sys.executable, "-m", "bgremove"], capture_output=True, text=True,
                               env=cli_env(_BGREMOVE_COMPLETE=f"source_{shell}"), check=True)
    committed = (ROOT / "completions" / FILES[shell]).read_text()
    assert committed == generated.stdout.strip() + "\n", f"out of date: run {REGENERATE}"


def complete(env: dict[str, str], *words: str) -> list[str]:
    """What bash offers for <Tab> at the last of `words` ("" for a new word), through the
    committed completion script."""
    script = (f'source "{ROOT / "completions" / FILES["bash"]}"\n'
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
              f"COMP_CWORD={len(words) - 1}\n"
              "_bgremove_completion bgremove\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          check=True)
    return proc.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_commands_options_and_values(tmp_path):
    env = bgremove_on_path(tmp_path)
    assert {"remove", "config"} <= set(complete(env, "bgremove", ""))
    # The default command's options complete right after `bgremove`, as they run there.
    assert complete(env, "bgremove", "--mo") == ["--mode", "--model", "--model-type"]
    assert complete(env, "bgremove", "photos/", "--files") == ["--files-from"]
    assert complete(env, "bgremove", "photos/", "--mode", "") == ["fast", "balanced", "quality"]
    assert complete(env, "bgremove", "config", "s") == ["show"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_install_completion_in_bash(tmp_path):
    env = bgremove_on_path(tmp_path)
    # Run from bash, so that Typer's shell detection (the parent process) finds bash. The second
    # command keeps bash from exec-ing the first in its place, which would leave whatever started
    # the tests as the parent.
    proc = subprocess.run(["bash", "-c", "bgremove --install-completion; exit $?"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    home = tmp_path / "home"
    installed = home / ".bash_completions" / "bgremove.sh"
    committed = (ROOT / "completions" / FILES["bash"]).read_text()
    assert installed.read_text().strip() == committed.strip()
    assert f"source '{installed}'" in (home / ".bashrc").read_text()
