"""What bgremove says on stderr: -q and -v, NO_COLOR, and no progress animation in a CI log."""

from __future__ import annotations

import re
import shutil

from tests.conftest import cli_env, run_cli

SGR = re.compile(rb"\x1b\[([0-9;]*)m")
# Cursor movement, line erasing, hidden cursor: what a live progress bar redraws itself with.
ANIMATION = re.compile(rb"\r|\x1b\[\d*[ABK]|\x1b\[2K|\x1b\[\?25[lh]")


def colour_codes(stderr: bytes) -> list[bytes]:
    """SGR parameters that set a colour (30-38, 40-48, 90-107), ignoring bold and the like."""
    found = []
    for match in SGR.finditer(stderr):
        for param in match[1].split(b";"):
            if param.isdigit() and (30 <= int(param) <= 48 or 90 <= int(param) <= 107):
                found.append(match[0])
    return found


def broken_batch(samples, tmp_path):
    """A batch that fails fast: two truncated JPEGs (the failure line is printed in red)."""
    src = tmp_path / "in"
    src.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (src / name).write_bytes((samples / "rocket.jpg").read_bytes()[:3000])
    return src


def test_forced_colour_in_a_ci_log_has_no_animation(samples, tmp_path):
    src = broken_batch(samples, tmp_path)
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), env=cli_env(FORCE_COLOR="1"))
    assert proc.returncode == 1
    assert colour_codes(proc.stderr), "FORCE_COLOR asks for colour"
    assert not ANIMATION.search(proc.stderr), "stderr is a pipe: no progress bar redraws"


def test_no_color_wins_over_forced_colour(samples, tmp_path):
    src = broken_batch(samples, tmp_path)
    proc = run_cli(str(src), "-o", str(tmp_path / "out"),
                   env=cli_env(FORCE_COLOR="1", NO_COLOR="1"))
    assert proc.returncode == 1
    assert b"a.jpg" in proc.stderr and b"truncated" in proc.stderr
    assert colour_codes(proc.stderr) == []


def test_plain_pipe_has_no_escape_codes_at_all(samples, tmp_path):
    src = broken_batch(samples, tmp_path)
    proc = run_cli(str(src), "-o", str(tmp_path / "out"))
    assert b"\x1b" not in proc.stderr and b"\r" not in proc.stderr


def test_quiet_and_verbose(samples, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(samples / "coffee.png", src / "a.png")
    shutil.copy(samples / "coffee.png", src / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.webp", "b.webp"):  # already done: nothing to compute, only to report
        (out / name).write_bytes(b"done before")
    keep = "--keep-unstamped"

    verbose = run_cli(str(src), "-o", str(out), "-v", keep).stderr.decode()
    assert f"skipped {src / 'a.png'} -> {out / 'a.webp'} (no stamp, kept)" in verbose
    assert f"skipped {src / 'b.png'} -> {out / 'b.webp'} (no stamp, kept)" in verbose
    assert "summary" in verbose

    normal = run_cli(str(src), "-o", str(out), keep).stderr.decode()
    assert "summary" in normal and str(src / "a.png") not in normal

    quiet = run_cli(str(src), "-o", str(out), "-q", keep)
    assert quiet.returncode == 0 and quiet.stderr == b""

    broken = broken_batch(samples, tmp_path / "x")
    quiet = run_cli(str(broken), "-o", str(tmp_path / "out2"), "-q")
    assert quiet.returncode == 1
    assert b"a.jpg" in quiet.stderr and b"summary" not in quiet.stderr  # only the failures
