"""Regenerate the shell completion scripts in completions/ from the CLI itself.

    python scripts/update_completions.py          # rewrite completions/*
    python scripts/update_completions.py --check  # exit 1 if a file is out of date

The scripts come from Typer's completion machinery (`_BGREMOVE_COMPLETE=source_bash bgremove`);
they call back into bgremove on every <Tab>, so they change only when Typer's templates do.
tests/test_completions.py fails when the committed files differ from what the CLI generates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each shell's file, named as that shell looks for it (zsh: `_bgremove` on $fpath).
FILES = {"bash": "bgremove.bash", "zsh": "_bgremove", "fish": "bgremove.fish"}


def generate(shell: str) -> str:
    env = {**os.environ, "_BGREMOVE_COMPLETE": f"source_{shell}",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "bgremove"], env=env, capture_output=True,
                          text=True, check=True)
    return proc.stdout.strip() + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for shell, name in FILES.items():
        path = ROOT / "completions" / name
        text = generate(shell)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{'out of date' if check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
