"""bgremove in shell pipelines: image bytes through stdin and stdout, path lists, JSON lines, a
JSON report, and dry runs. Everything runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import stat
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import cli_env, run_cli

OUTCOME_KEYS = {"input", "output", "status", "reason", "error", "detail", "bytes", "ms",
                "credits_remaining", "request_id"}


def small_copy(sample: Path, dest: Path, width: int = 200) -> Path:
    """A smaller copy of a sample photo: the same subject, quicker to decode and encode."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(sample).convert("RGB")
    image.thumbnail((width, width))
    image.save(dest)
    return dest


def json_lines(stdout: bytes) -> list[dict]:
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    for line in lines:
        assert set(line) == OUTCOME_KEYS
    return lines


def test_stdin_to_stdout_carries_only_the_image(samples):
    proc = run_cli("-", "--mode", "fast", input=(samples / "rocket.jpg").read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout
    # A WebP file is a RIFF container whose header states its length: not one byte more or less.
    assert out[:4] == b"RIFF" and out[8:12] == b"WEBP"
    assert int.from_bytes(out[4:8], "little") + 8 == len(out)
    image = Image.open(BytesIO(out))
    image.load()
    assert image.mode == "RGBA" and image.size == (640, 427)
    assert proc.stderr == b""  # a filter that worked has nothing to say (-v: the summary)


def test_file_to_stdout_as_png_quietly(samples):
    proc = run_cli(str(samples / "chelsea.webp"), "-o", "-", "--format", "png", "--mode", "fast",
                   "-q")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"\x89PNG\r\n\x1a\n") and proc.stdout.endswith(b"IEND\xaeB`\x82")
    assert Image.open(BytesIO(proc.stdout)).size == (451, 300)
    assert proc.stderr == b""  # -q: nothing to say when everything worked


@pytest.mark.parametrize("args, complaint", [
    (["-", "--json"], "--json"),
    (["photo.jpg", "-o", "-", "--json"], "--json"),
    (["-", "--files-from", "-", "-o", "out"], "not both"),
    (["--files-from", "list.txt", "-o", "-"], "-o -"),
    (["photo.jpg", "-o", "out", "-q", "-v"], "contradict"),
])
def test_stdout_and_stdin_conflicts_are_usage_errors(tmp_path, args, complaint):
    (tmp_path / "list.txt").write_text("photo.jpg\n")
    proc = run_cli(*args, input=b"", cwd=tmp_path)
    assert proc.returncode == 2
    assert complaint in proc.stderr.decode()
    assert proc.stdout == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]  # nothing written


def test_files_from_stdin_with_missing_path_json_and_report(samples, tmp_path):
    small_copy(samples / "chelsea.webp", tmp_path / "assets" / "a" / "cat.webp")
    small_copy(samples / "rocket.jpg", tmp_path / "more" / "x" / "rocket.jpg")
    (tmp_path / "more" / "notes.txt").write_text("not an image")
    listing = ("# what changed since the last build\n"
               "assets/a/cat.webp\n"
               "\n"
               "  assets/missing.jpg  \n"
               "more\n")
    proc = run_cli("--files-from", "-", "-o", "build", "--mode", "fast", "--json",
                   "--report", "report.json", input=listing.encode(), cwd=tmp_path)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr  # one listed path is missing; the rest were processed
    umask = os.umask(0)
    os.umask(umask)

    lines = json_lines(proc.stdout)
    by_input = {line["input"]: line for line in lines}
    assert set(by_input) == {"assets/a/cat.webp", "assets/missing.jpg", "more/x/rocket.jpg",
                             "more/notes.txt"}
    notes = by_input.pop("more/notes.txt")
    assert notes["status"] == "not an image" and notes["output"] is None
    missing = by_input["assets/missing.jpg"]
    assert missing["status"] == "failed" and "no such file" in missing["error"]
    assert missing["output"] is None
    assert "assets/missing.jpg" in stderr and "no such file" in stderr
    # A listed file lands at its path as written; a listed folder is walked.
    assert by_input["assets/a/cat.webp"]["output"] == "build/assets/a/cat.webp"
    assert by_input["more/x/rocket.jpg"]["output"] == "build/more/x/rocket.webp"
    for name in ("assets/a/cat.webp", "more/x/rocket.jpg"):
        line = by_input[name]
        assert line["status"] == "done" and line["error"] is None and line["ms"] > 0
        written = tmp_path / line["output"]
        assert written.stat().st_size == line["bytes"]
        # Like any new file, an output's permissions follow the umask (not private 0600).
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
        assert Image.open(written).mode == "RGBA"
    assert sorted(p.relative_to(tmp_path / "build").as_posix()
                  for p in (tmp_path / "build").rglob("*") if p.is_file()) == [
        "assets/a/cat.webp", "more/x/rocket.webp"]

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["exit_code"] == 1 and report["stopped"] is None
    assert report["counts"] == {"done": 2, "skipped": 0, "failed": 1, "not_processed": 0,
                                "not_images": 1}
    assert report["not_images"] == ["more/notes.txt"]
    assert sorted(o["input"] for o in report["outcomes"]) == sorted([*by_input, "more/notes.txt"])
    assert report["options"]["files_from"] == "-" and report["options"]["mode"] == "fast"
    assert report["seconds"] > 0
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


def test_files_from_a_file_with_nul_separators(samples, tmp_path):
    small_copy(samples / "astronaut.jpg", tmp_path / "odd name #1.jpg")
    (tmp_path / "list").write_bytes(b"odd name #1.jpg\0")
    proc = run_cli("--files-from", "list", "-o", "out", "--mode", "fast", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert Image.open(tmp_path / "out" / "odd name #1.webp").mode == "RGBA"


def test_empty_list_is_an_empty_batch(tmp_path):
    proc = run_cli("--files-from", "-", "-o", "out", "--json", input=b"# nothing changed\n",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""


def test_dry_run_lists_work_costs_credits_and_writes_nothing(samples, tmp_path):
    src = tmp_path / "in"
    for name in ("a", "b", "c"):
        small_copy(samples / "coffee.png", src / f"{name}.png", width=64)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.webp").write_bytes(b"finished earlier, by hand")
    env = cli_env(BGREMOVE_BACKEND="remote")
    proc = run_cli(str(src), "-o", str(out), "--dry-run", "--keep-unstamped", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    listing = proc.stdout.decode().splitlines()
    assert listing == [
        f"would process: {src / 'a.png'} -> {out / 'a.webp'} (new)",
        f"would skip: {src / 'b.png'} -> {out / 'b.webp'} (no stamp, kept)",
        f"would process: {src / 'c.png'} -> {out / 'c.webp'} (new)",
    ]
    stderr = proc.stderr.decode()
    assert re.search(r"credits it would cost\D+(\d+)", stderr)[1] == "2"
    assert sorted(p.name for p in out.iterdir()) == ["b.webp"]
    # Without --keep-unstamped, an output bgremove did not stamp is made again.
    proc = run_cli(str(src), "-o", str(out), "--dry-run", env=env)
    assert f"would process: {src / 'b.png'} -> {out / 'b.webp'} (no stamp)" in (
        proc.stdout.decode().splitlines())
    assert re.search(r"credits it would cost\D+(\d+)", proc.stderr.decode())[1] == "3"

    # --overwrite: the skipped one would be redone too; --json: the same as JSON lines.
    proc = run_cli(str(src), "-o", str(tmp_path / "new"), "--dry-run", "--json", "--overwrite")
    assert [line["status"] for line in json_lines(proc.stdout)] == ["would process"] * 3
    assert not (tmp_path / "new").exists()
