"""Incremental runs are never stale: each output carries a stamp of what it was made from (input
content, options, model, pipeline version), a re-run redoes exactly the outputs whose stamp no
longer matches, and `--check` tells a CI job, writing nothing, whether any output is stale."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove import stamps
from bgremove.imaging.png import encode_png
from bgremove.outcomes import Status
from tests.conftest import run_cli
from tests.inprocess import invoke
from tests.test_pipes import small_copy


@pytest.fixture(scope="module")
def session():
    with bgremove.new_session() as model:
        yield model


def assets(samples: Path, root: Path) -> Path:
    """A small asset folder: two photos, as a CI asset job has them."""
    src = root / "assets"
    small_copy(samples / "astronaut.jpg", src / "astronaut.jpg", 96)
    small_copy(samples / "coffee.png", src / "coffee.png", 96)
    return src


def replace_content(path: Path, other: Path) -> None:
    """Put another photo's content at `path`, with a newer modification time."""
    old = path.stat().st_mtime_ns
    small_copy(other, path, 96)
    os.utime(path, ns=(old + 5_000_000_000, old + 5_000_000_000))


def why(summary: bgremove.Summary) -> dict[str, dict[str, int]]:
    return {s.value: summary.why(s) for s in (Status.done, Status.skipped, Status.would_process)
            if summary.why(s)}


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time: what "nothing was
    written" compares."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def json_lines(stdout: bytes) -> dict[str, dict]:
    return {Path(o["input"]).name: o for o in map(json.loads, stdout.decode().splitlines())}


# -- the two findings of the issue, end to end -----------------------------------------------------

def test_a_replaced_photo_is_made_again(samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    assert invoke(str(src), "-o", str(out), "--mode", "fast").returncode == 0
    before = np.asarray(Image.open(out / "astronaut.webp"))
    replace_content(src / "astronaut.jpg", samples / "rocket.jpg")

    again = invoke(str(src), "-o", str(out), "--mode", "fast", "--json")
    assert again.returncode == 0, again.stderr.decode()
    lines = json_lines(again.stdout)
    assert (lines["astronaut.jpg"]["status"], lines["astronaut.jpg"]["reason"]) == (
        "done", "input changed")
    assert (lines["coffee.png"]["status"], lines["coffee.png"]["reason"]) == (
        "skipped", "up to date")
    after = np.asarray(Image.open(out / "astronaut.webp"))
    assert after.shape != before.shape or not np.array_equal(after, before)  # the rocket now
    stderr = again.stderr.decode()
    assert "input changed" in stderr and "skipped (up to date)" in stderr


def test_another_mode_makes_every_output_again(samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    assert invoke(str(src), "-o", str(out), "--mode", "fast").returncode == 0
    again = invoke(str(src), "-o", str(out), "--mode", "quality", "--json")
    assert again.returncode == 0, again.stderr.decode()
    assert {(o["status"], o["reason"]) for o in json_lines(again.stdout).values()} == {
        ("done", "options changed")}
    stamp = json.loads(stamps.read(out / "coffee.webp"))
    assert stamp["options"]["mode"] == "quality"
    # ... and the same mode again keeps them all
    third = invoke(str(src), "-o", str(out), "--mode", "quality", "--json")
    assert {o["reason"] for o in json_lines(third.stdout).values()} == {"up to date"}


# -- --check ---------------------------------------------------------------------------------------

def test_check_writes_nothing_and_its_exit_code_says_whether_outputs_are_stale(samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    missing = run_cli(str(src), "-o", str(out), "--check", "--mode", "fast")
    assert missing.returncode == 1, missing.stderr.decode()
    assert not out.exists()  # not even the folder
    listed = missing.stdout.decode().splitlines()
    assert sorted(listed) == [f"missing: {out / 'astronaut.webp'} (from {src / 'astronaut.jpg'})",
                              f"missing: {out / 'coffee.webp'} (from {src / 'coffee.png'})"]
    assert "2 outputs are missing or stale" in missing.stderr.decode()

    assert invoke(str(src), "-o", str(out), "--mode", "fast").returncode == 0
    made = tree(out)
    fresh = run_cli(str(src), "-o", str(out), "--check", "--mode", "fast")
    assert fresh.returncode == 0, fresh.stderr.decode()
    assert fresh.stdout == b""
    assert "every output is up to date" in fresh.stderr.decode()

    replace_content(src / "coffee.png", samples / "chelsea.webp")
    stale = run_cli(str(src), "-o", str(out), "--check", "--mode", "fast", "--json")
    assert stale.returncode == 1
    lines = json_lines(stale.stdout)
    assert (lines["coffee.png"]["status"], lines["coffee.png"]["reason"]) == (
        "would process", "input changed")
    assert lines["astronaut.jpg"]["reason"] == "up to date"
    assert tree(out) == made  # nothing written, nothing touched

    report = tmp_path / "report.json"
    other = run_cli(str(src), "-o", str(out), "--check", "--mode", "balanced",
                    "--report", str(report), "-q")
    assert other.returncode == 1
    assert json.loads(report.read_text())["reasons"] == {
        "would process": {"options changed": 2}}
    assert tree(out) == made


def test_check_refuses_what_it_cannot_check(samples, tmp_path):
    src = assets(samples, tmp_path)
    with_overwrite = run_cli(str(src), "-o", str(tmp_path / "o"), "--check", "--overwrite")
    assert with_overwrite.returncode == 2 and b"--overwrite" in with_overwrite.stderr
    to_stdout = run_cli(str(src / "coffee.png"), "-o", "-", "--check")
    assert to_stdout.returncode == 2 and b"stdout" in to_stdout.stderr


def test_check_with_a_cluster_starts_none(samples, tmp_path):
    pytest.importorskip("distributed")
    src, out = assets(samples, tmp_path), tmp_path / "build"
    assert invoke(str(src), "-o", str(out), "--mode", "fast").returncode == 0
    started = time.monotonic()
    proc = run_cli(str(src), "-o", str(out), "--mode", "fast", "--check", "--cluster", "local:2")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "every output is up to date" in proc.stderr.decode()
    assert time.monotonic() - started < 60  # no Dask workers were started to find that out
    (out / "coffee.webp").unlink()
    assert run_cli(str(src), "-o", str(out), "--mode", "fast", "--check",
                   "--cluster", "local:2").returncode == 1


def check(src: Path, out: Path, options, **batch) -> dict:
    return why(bgremove.Batch([src], out, options=options, check=True, **batch).run())


# -- every reason, on the library ----------------------------------------------------------------

def test_each_reason(session, samples, tmp_path, monkeypatch):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    fast = bgremove.RemovalOptions.build(mode="fast")

    def run(**kwargs) -> dict:
        kwargs.setdefault("options", fast)
        return why(bgremove.remove_batch([src], out, session=session, **kwargs))

    assert run() == {"done": {"new": 2}}
    assert run() == {"skipped": {"up to date": 2}}
    # Touched, not changed (a checkout, a copy): the content decides, and it is the same.
    for photo in src.iterdir():
        os.utime(photo, ns=(time.time_ns(), time.time_ns()))
    assert run() == {"skipped": {"up to date": 2}}
    # Changed: new content, a newer time.
    replace_content(src / "coffee.png", samples / "camera.png")
    assert run() == {"done": {"input changed": 1}, "skipped": {"up to date": 1}}
    assert run(options=bgremove.RemovalOptions.build(mode="fast", smooth_edges=False)) == {
        "done": {"options changed": 2}}
    assert run(options=bgremove.RemovalOptions.build(mode="fast", smooth_edges=False)) == {
        "skipped": {"up to date": 2}}
    assert run() == {"done": {"options changed": 2}}
    # A model is its content: a copy of the file the session runs (the bundled one, or its int8
    # build if --precision auto picks it) is that model, one byte more is another model.
    custom = tmp_path / "mine.onnx"
    shutil.copy(session.model_path, custom)
    assert check(src, out, fast, model_id=stamps.local_model_id(str(custom))) == {
        "skipped": {"up to date": 2}}
    with open(custom, "ab") as f:
        f.write(b"\0")
    assert check(src, out, fast, model_id=stamps.local_model_id(str(custom))) == {
        "would process": {"model changed": 2}}
    # A bgremove whose pipeline makes other pixels.
    monkeypatch.setattr(stamps, "PIPELINE", stamps.PIPELINE + 1)
    assert run() == {"done": {"bgremove changed": 2}}
    monkeypatch.undo()
    assert run(overwrite=True) == {"done": {"overwrite": 2}}


def test_a_mode_whose_pixels_changed_redoes_only_its_own_outputs(session, samples, tmp_path,
                                                                 monkeypatch):
    # bgremove 0.4 changed quality's matte and nothing else: 0.3's quality outputs are redone,
    # its fast outputs stay up to date.
    src = assets(samples, tmp_path)
    fast, quality = (bgremove.RemovalOptions.build(mode=m) for m in ("fast", "quality"))
    monkeypatch.setattr(stamps, "MODE_REVISIONS", {})  # as bgremove 0.3 stamped
    for options in (fast, quality):
        bgremove.remove_batch([src], tmp_path / options.mode.value, options=options,
                              session=session)
    monkeypatch.undo()
    assert check(src, tmp_path / "fast", fast) == {"skipped": {"up to date": 2}}
    assert check(src, tmp_path / "quality", quality) == {
        "would process": {"bgremove changed": 2}}


def test_options_that_do_not_change_the_output_do_not_make_it_stale(session, samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    transparent = bgremove.RemovalOptions(mode=bgremove.Mode.fast)
    bgremove.remove_batch([src], out, options=transparent, session=session)
    # The fill colour of a cut-out whose background is transparent is never used.
    other = bgremove.RemovalOptions(mode=bgremove.Mode.fast, background_color=(1, 2, 3))
    assert why(bgremove.remove_batch([src], out, options=other, session=session,
                                     check=True)) == {"skipped": {"up to date": 2}}
    filled = bgremove.RemovalOptions(mode=bgremove.Mode.fast, include_mask=False,
                                     background_color=(1, 2, 3))
    summary = bgremove.remove_batch([src], out, options=filled, session=session, check=True)
    assert why(summary) == {"would process": {"options changed": 2}}
    assert summary.failed


def test_unstamped_outputs_are_made_again_unless_kept(session, samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    out.mkdir()
    Image.new("RGBA", (8, 8)).save(out / "coffee.webp")  # made by hand, or by bgremove 0.2
    hand_made = (out / "coffee.webp").read_bytes()
    fast = bgremove.RemovalOptions(mode=bgremove.Mode.fast)

    kept = bgremove.remove_batch([src], out, options=fast, session=session, keep_unstamped=True)
    assert why(kept) == {"done": {"new": 1}, "skipped": {"no stamp, kept": 1}}
    assert (out / "coffee.webp").read_bytes() == hand_made

    redone = bgremove.remove_batch([src], out, options=fast, session=session)
    assert why(redone) == {"done": {"no stamp": 1}, "skipped": {"up to date": 1}}
    assert stamps.read(out / "coffee.webp") is not None


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_an_output_cut_short_is_never_kept_as_up_to_date(session, samples, tmp_path, fmt):
    """What a power cut can leave of an output written without fsync: its first bytes (a PNG's
    or JPEG's stamp among them) and not its end. A re-run makes it again, and --check says so;
    with --keep-unstamped too (a WebP keeps its stamp at its end, so a cut one has none)."""
    src, out = assets(samples, tmp_path), tmp_path / "build"
    options = bgremove.RemovalOptions.build(mode="fast", output_format=fmt,
                                            include_mask=fmt != "jpg")  # JPEG: no transparency
    assert why(bgremove.remove_batch([src], out, options=options, session=session)) == {
        "done": {"new": 2}}
    output = out / f"coffee.{fmt}"
    whole = output.read_bytes()
    output.write_bytes(whole[:len(whole) * 2 // 3])
    assert (stamps.read(output) is not None) is (fmt != "webp")  # the stamp may well survive

    assert check(src, out, options) == {"would process": {"incomplete": 1},
                                        "skipped": {"up to date": 1}}
    assert check(src, out, options, keep_unstamped=True) == {
        "would process": {"incomplete": 1}, "skipped": {"up to date": 1}}
    again = bgremove.remove_batch([src], out, options=options, session=session)
    assert why(again) == {"done": {"incomplete": 1}, "skipped": {"up to date": 1}}
    assert output.read_bytes()[-2:] == whole[-2:] and stamps.read(output) is not None
    assert why(bgremove.remove_batch([src], out, options=options, session=session)) == {
        "skipped": {"up to date": 2}}


# -- the stamp inside each format -----------------------------------------------------------------

def encoded(fmt: str, **save) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (23, 41, 4), dtype=np.uint8)
    if fmt == "ours":
        return encode_png(pixels)
    image = Image.fromarray(pixels if save.pop("alpha", True) else pixels[:, :, :3])
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [
    pytest.param(encoded("ours"), id="png (bgremove's writer)"),
    pytest.param(encoded("PNG", compress_level=6), id="png (Pillow)"),
    pytest.param(encoded("WEBP", quality=90), id="webp lossy with alpha"),
    pytest.param(encoded("WEBP", quality=90, alpha=False), id="webp lossy"),
    pytest.param(encoded("WEBP", lossless=True), id="webp lossless"),
    pytest.param(encoded("WEBP", lossless=True, alpha=False), id="webp lossless, no alpha"),
    pytest.param(encoded("JPEG", quality=92, alpha=False), id="jpeg"),
])
def test_a_stamp_reads_back_from_the_header_and_leaves_the_pixels(data, tmp_path):
    text = json.dumps({"quote": '"', "markup": "<&>", "n": 1})
    path = tmp_path / "out"
    path.write_bytes(stamps.embed(data, text))
    assert stamps.read(path) == text
    with Image.open(io.BytesIO(data)) as plain, Image.open(path) as stamped:
        assert stamped.mode == plain.mode and stamped.size == plain.size
        assert np.array_equal(np.asarray(stamped), np.asarray(plain))
    path.write_bytes(data)
    assert stamps.read(path) is None


def test_what_is_no_stamped_image_has_no_stamp(tmp_path):
    for name, data in {"empty": b"", "text": b"hello", "short png": b"\x89PNG\r\n\x1a\n",
                       "short webp": b"RIFF\0\0\0\0WEBPVP8X", "short jpeg": b"\xff\xd8\xff",
                       "broken jpeg segment": b"\xff\xd8\xff\xe1\x00\x00" * 3,
                       "broken png chunk": b"\x89PNG\r\n\x1a\n" + b"\xff" * 12}.items():
        (tmp_path / name).write_bytes(data)
        assert stamps.read(tmp_path / name) is None, name
    with pytest.raises(FileNotFoundError):
        stamps.read(tmp_path / "missing")


# -- --prune ---------------------------------------------------------------------------------------

def test_prune_removes_only_stamped_outputs_whose_input_is_gone(session, samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    small_copy(samples / "rocket.jpg", src / "sub" / "rocket.jpg", 96)
    fast = bgremove.RemovalOptions(mode=bgremove.Mode.fast)
    bgremove.remove_batch([src], out, options=fast, session=session)
    (src / "sub" / "rocket.jpg").unlink()
    Image.new("RGB", (4, 4)).save(out / "by-hand.png")  # no stamp: never bgremove's to remove
    (out / "notes.txt").write_text("mine")
    shutil.copy(out / "coffee.webp", out / ".backup.webp")  # hidden: never looked at

    listed = bgremove.remove_batch([src], out, options=fast, session=session, prune=True,
                                   dry_run=True)
    assert listed.count(Status.would_prune) == 1
    assert (out / "sub" / "rocket.webp").exists()
    seen = []
    pruned = bgremove.remove_batch([src], out, options=fast, session=session, prune=True,
                                   on_progress=lambda o, s: seen.append(o.as_dict()))
    assert not pruned.failed and pruned.count(Status.pruned) == 1
    assert [(o["input"], o["output"], o["reason"]) for o in seen if o["status"] == "pruned"] == [
        (None, str(out / "sub" / "rocket.webp"), "input gone")]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".backup.webp", "astronaut.webp", "by-hand.png", "coffee.webp", "notes.txt"]


def test_prune_waits_for_a_run_without_failures(session, samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    fast = bgremove.RemovalOptions(mode=bgremove.Mode.fast)
    bgremove.remove_batch([src], out, options=fast, session=session)
    shutil.copy(out / "coffee.webp", out / "gone.webp")  # stamped, its input is not there
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    failed = bgremove.remove_batch([src], out, options=fast, session=session, prune=True)
    assert failed.failed and failed.count(Status.pruned) == 0
    assert failed.prune_skipped and (out / "gone.webp").exists()
    with pytest.raises(bgremove.UsageError, match=r"a part \(shard\)"):
        bgremove.Batch([src], out, prune=True, shard=bgremove.Shard(1, 2))


def test_check_with_prune_fails_on_an_output_whose_input_is_gone(samples, tmp_path):
    src, out = assets(samples, tmp_path), tmp_path / "build"
    assert invoke(str(src), "-o", str(out), "--mode", "fast").returncode == 0
    (src / "coffee.png").unlink()
    assert run_cli(str(src), "-o", str(out), "--mode", "fast", "--check").returncode == 0
    proc = run_cli(str(src), "-o", str(out), "--mode", "fast", "--check", "--prune")
    assert proc.returncode == 1
    assert proc.stdout.decode().splitlines() == [
        f"would prune: {out / 'coffee.webp'} (input gone)"]
    assert (out / "coffee.webp").exists()
    gone = invoke(str(src), "-o", str(out), "--mode", "fast", "--prune")
    assert gone.returncode == 0 and f"pruned {out / 'coffee.webp'}" in gone.stderr.decode()
    assert not (out / "coffee.webp").exists()
