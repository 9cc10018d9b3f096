"""The main command end to end, as a user runs it: folders in, mirrored cut-outs out. In a real
process where the exit status or what reaches stdout is the point, else in this one (invoke)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli
from tests.inprocess import invoke


def make_tree(samples: Path, root: Path) -> Path:
    (root / "in" / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(samples / "coffee.png", root / "in" / "coffee.png")
    shutil.copy(samples / "astronaut.jpg", root / "in" / "sub" / "astronaut.jpg")
    shutil.copy(samples / "chelsea.webp", root / "in" / "sub" / "deeper" / "chelsea.webp")
    # a truncated JPEG in the middle of the batch, and a file that is no image at all
    (root / "in" / "sub" / "broken.jpg").write_bytes((samples / "rocket.jpg").read_bytes()[:4000])
    (root / "in" / "notes.txt").write_text("not an image")
    return root / "in"


def test_folder_is_mirrored_and_broken_file_reported(samples, tmp_path):
    src = make_tree(samples, tmp_path)
    out = tmp_path / "out"
    proc = run_cli(str(src), "-o", str(out), "--mode", "fast")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["coffee.webp", "sub/astronaut.webp", "sub/deeper/chelsea.webp"]
    for path in out.rglob("*.webp"):
        assert Image.open(path).mode == "RGBA"
    assert "broken.jpg" in stderr and "truncated" in stderr
    assert "not images" in stderr  # notes.txt is skipped and said so
    assert proc.stdout == b""  # data only on stdout, and there is none here
    assert not list(out.rglob("*.part"))


def test_second_run_skips_finished_work(samples, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(samples / "coffee.png", src)
    out = tmp_path / "out"
    assert invoke(str(src), "-o", str(out), "--mode", "fast").returncode == 0
    stamp = (out / "coffee.webp").stat().st_mtime_ns
    again = invoke(str(src), "-o", str(out), "--mode", "fast")
    assert again.returncode == 0
    assert (out / "coffee.webp").stat().st_mtime_ns == stamp
    assert "skipped (up to date)" in again.stderr.decode()


def test_single_file_to_named_output(samples, tmp_path):
    target = tmp_path / "cut.png"
    proc = invoke(str(samples / "astronaut.jpg"), "-o", str(target), "--no-include-mask")
    assert proc.returncode == 0, proc.stderr.decode()
    image = Image.open(target)
    assert image.format == "PNG" and image.mode == "RGB"  # format taken from the file name
    assert np.asarray(image)[5, 505].tolist() == [255, 255, 255]


def test_same_stem_inputs_both_kept(samples, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(samples / "coffee.png", src / "a.png")
    Image.open(samples / "astronaut.jpg").save(src / "a.jpg")
    out = tmp_path / "out"
    proc = invoke(str(src), "-o", str(out), "--mode", "fast", "--format", "png")
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg.png", "a.png.png"]
    assert Image.open(out / "a.jpg.png").size == (512, 512)


def test_usage_errors_exit_2(samples, tmp_path):
    assert run_cli(str(samples)).returncode == 2  # no -o for a folder
    proc = run_cli(str(samples / "coffee.png"), "-o", str(tmp_path), "--mode", "slow")
    assert proc.returncode == 2
    proc = run_cli(str(samples / "coffee.png"), "-o", str(tmp_path), "--model", "nope")
    assert proc.returncode == 2 and "u2netp" in proc.stderr.decode()


def test_missing_input_reported_rest_processed(samples, tmp_path):
    out = tmp_path / "out"
    proc = invoke(str(tmp_path / "missing.jpg"), str(samples / "coffee.png"), "-o", str(out),
                   "--mode", "fast")
    assert proc.returncode == 1
    assert "missing.jpg" in proc.stderr.decode()
    assert (out / "coffee.webp").exists()


def test_help_does_not_import_onnxruntime():
    import subprocess
    import sys

    code = ("import sys; from bgremove.cli.app import app; from typer.testing import CliRunner;"
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0;"
            "heavy = {'onnxruntime', 'numpy', 'rembg', 'PIL.Image'} & set(sys.modules);"
            "print(sorted(heavy))")
    from tests.conftest import cli_env

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=cli_env(),
                         check=True).stdout.decode()
    assert out.strip() == "[]"
