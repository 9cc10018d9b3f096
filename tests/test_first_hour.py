"""What a new user tripped on in the first hour (issue 25), each reproduced: a redirect's name
picks the format, listed absolute paths, Pillow's words, dry runs that agree with real runs,
output folders made only for outputs, a quiet filter, and a progress rate that means something."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

import bgremove
from bgremove.cli.progress import ConsoleReporter
from bgremove.errors import ImageError
from bgremove.imaging.decode import decode
from bgremove.options import Mode, OutputFormat, RemovalOptions
from bgremove.outcomes import Outcome, Status, Summary
from bgremove.plan import Planner, WorkItem
from tests.conftest import cli_env
from tests.test_truncated_jpeg import with_jpeg_size

FAST = RemovalOptions(mode=Mode.fast)


@pytest.fixture(scope="module")
def session():
    with bgremove.new_session(device="cpu", threads=1) as loaded:
        yield loaded


def small_jpeg(samples: Path, dest: Path, width: int = 96) -> Path:
    image = Image.open(samples / "rocket.jpg").convert("RGB")
    image.thumbnail((width, width))
    image.save(dest, "JPEG")
    return dest


def redirected(args: list[str], stdin: Path, stdout: Path) -> subprocess.CompletedProcess:
    """`bgremove ARGS < stdin > stdout`, as a shell runs it: stdout is the file itself."""
    with open(stdin, "rb") as given, open(stdout, "wb") as taken:
        return subprocess.run([sys.executable, "-m", "bgremove", *args], stdin=given,
                              stdout=taken, stderr=subprocess.PIPE, env=cli_env(), timeout=120)


# 1 and 6: `bgremove - < x.jpg > y.png` writes PNG, and says nothing when it worked.

def test_a_redirect_to_a_png_file_gets_png_and_a_quiet_stderr(samples, tmp_path):
    photo = small_jpeg(samples, tmp_path / "x.jpg")
    proc = redirected(["-", "--mode", "fast"], photo, tmp_path / "y.png")
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "y.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert proc.stderr == b""  # a filter that worked has nothing to say


def test_an_explicit_format_wins_over_the_redirect_with_a_warning(samples, tmp_path):
    photo = small_jpeg(samples, tmp_path / "x.jpg")
    proc = redirected(["-", "--mode", "fast", "--format", "webp", "-v"], photo,
                      tmp_path / "y.png")
    assert proc.returncode == 0, proc.stderr.decode()
    data = (tmp_path / "y.png").read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    stderr = proc.stderr.decode()
    assert "warning" in stderr and "y.png" in stderr and "WebP" in stderr
    assert "processed" in stderr  # -v: the summary is back


def test_the_name_of_stdout_is_read_only_for_a_regular_file(tmp_path):
    from bgremove.cli.redirect import file_name

    with open(tmp_path / "cut.jpg", "wb") as f:
        assert os.path.samefile(file_name(f.fileno()), tmp_path / "cut.jpg")
    reader, writer = os.pipe()
    try:
        assert file_name(writer) is None  # a pipe: the default format stays
    finally:
        os.close(reader)
        os.close(writer)


def test_a_single_image_to_stdout_reports_only_with_verbose():
    summary = Summary()
    summary.add(Outcome(WorkItem(None, None), Status.done, bytes=10))
    summary.seconds = 1.0
    for verbose, printed in ((False, False), (True, True)):
        stream = io.StringIO()
        console = ConsoleReporter(Console(file=stream, width=80), verbose=verbose,
                                  silent_on_success=True)
        console.finish(summary)
        assert bool(stream.getvalue()) is printed
    failed = Summary()
    failed.add(Outcome(WorkItem(None, None), Status.failed, "not an image"))
    stream = io.StringIO()
    ConsoleReporter(Console(file=stream, width=80), silent_on_success=True).finish(failed)
    assert "failed" in stream.getvalue()


# 2: listed absolute paths are placed as folders named on the command line are.

def planned(listed: list[str], out: Path) -> list[str]:
    planner = Planner([], str(out), OutputFormat.webp, listed=iter(listed))
    return [item.dest.relative_to(out).as_posix() for item in planner]


def test_listed_paths_under_the_current_folder_keep_their_path_from_it(tmp_path, monkeypatch):
    (tmp_path / "samples").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "samples" / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    listed = [str(tmp_path / "samples" / "a.jpg"), "samples/b.jpg"]
    assert planned(listed, tmp_path / "out") == ["samples/a.webp", "samples/b.webp"]


def test_listed_paths_elsewhere_land_below_the_folder_they_share(tmp_path, monkeypatch):
    data = tmp_path / "data" / "photos"
    for name in ("one/a.jpg", "two/b.jpg", "c.jpg"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(b"x")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    listed = [str(data / "one" / "a.jpg"), "../data/photos/two/b.jpg", str(data / "c.jpg")]
    out = tmp_path / "work" / "out"
    assert planned(listed, out) == ["one/a.webp", "two/b.webp", "c.webp"]
    # One file alone lands in -o itself, as `bgremove FILE -o out/` puts it; never above -o.
    assert planned(["../data/photos/one/a.jpg"], out) == ["a.webp"]
    # A listed folder is walked below the folder it shares with the rest.
    assert planned([str(data / "one"), str(data / "two")], out) == ["one/a.webp", "two/b.webp"]


# 3: a truncated image, in our words; Pillow's only for those who ask.

def test_a_truncated_image_is_said_in_our_words(samples, tmp_path, session):
    truncated = (samples / "rocket.jpg").read_bytes()[:20000]
    with pytest.raises(ImageError) as caught:
        decode(truncated)
    assert str(caught.value) == "truncated image: the file ends before the image data does"
    assert "bytes not processed" in caught.value.detail  # Pillow's words, kept for -v / --json

    (tmp_path / "cut.jpg").write_bytes(truncated)
    outcomes = []
    batch = bgremove.Batch([str(tmp_path / "cut.jpg")], tmp_path / "out")
    batch.run(session, workers=1, on_progress=lambda o, s: outcomes.append(o))
    (outcome,) = outcomes
    assert outcome.error == "truncated image: the file ends before the image data does"
    assert "bytes not processed" in json.dumps(outcome.as_dict())  # --json, --report
    for verbose in (False, True):
        stream = io.StringIO()
        ConsoleReporter(Console(file=stream, width=300), verbose=verbose).update(
            outcome, batch.summary)
        assert "truncated image" in stream.getvalue()
        assert ("bytes not processed" in stream.getvalue()) is verbose


# 4: a dry run says what the real run will say, where the header or the size tells.

def test_a_dry_run_agrees_with_the_run(samples, tmp_path, session):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.jpg").write_text("not an image either")
    (folder / "huge.jpg").write_bytes(with_jpeg_size(
        small_jpeg(samples, tmp_path / "x.jpg").read_bytes(), 9000, 9000))
    small_jpeg(samples, folder / "fine.jpg")
    named = tmp_path / "named-empty.jpg"
    named.write_bytes(b"")

    def run(dry_run: bool) -> tuple[dict, Summary]:
        outcomes = {}
        batch = bgremove.Batch([str(folder), str(named)], tmp_path / "out", options=FAST,
                               dry_run=dry_run)
        summary = batch.run(None if dry_run else session, workers=1,
                            on_progress=lambda o, s: outcomes.update({o.item.name: o}))
        return {name: (o.status, o.error) for name, o in outcomes.items()}, summary

    dry, dry_summary = run(dry_run=True)
    real, real_summary = run(dry_run=False)
    assert dry.pop(str(folder / "fine.jpg")) == (Status.would_process, None)
    assert real.pop(str(folder / "fine.jpg")) == (Status.done, None)
    assert dry == real
    assert real[str(named)] == (Status.failed, "empty file (0 bytes)")
    assert real[str(folder / "notes.txt")] == (Status.not_image, None)
    assert "9000x9000" in real[str(folder / "huge.jpg")][1]
    for status in (Status.failed, Status.not_image):
        assert dry_summary.count(status) == real_summary.count(status)


def test_a_remote_dry_run_agrees_with_the_remote_run(samples, tmp_path, session):
    # The API's limits (contract.py), not the local engine's: a 4001-pixel side and a file over
    # 10 MB are refused before a request is sent, in a dry run as in the run.
    from bgremove.contract import MAX_FILE_BYTES, MAX_SIDE
    from bgremove.server import create_app
    from bgremove.server.store import open_store
    from tests.inprocess import invoke
    from tests.serving import serve_app

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (MAX_SIDE + 1, 10), "white").save(folder / "wide.png")
    (folder / "empty.png").write_bytes(b"")
    padded = small_jpeg(samples, tmp_path / "x.jpg").read_bytes()
    (folder / "padded.jpg").write_bytes(padded + bytes(MAX_FILE_BYTES + 1 - len(padded)))
    small_jpeg(samples, folder / "fine.jpg")
    store = open_store(tmp_path / "keys.sqlite3")
    key = store.create("tester@example.com", 10)

    def run(url: str, *more: str) -> tuple[int, dict]:
        env = cli_env(BGREMOVE_API_KEY=key)
        env.pop("BGREMOVE_API_URL", None)
        proc = invoke(str(folder), "-o", str(tmp_path / "out"), "--mode", "fast", "--json",
                      "--backend", "remote", "--api-url", url, *more, env=env)
        lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        return proc.returncode, {Path(o["input"]).name: (o["status"], o["error"]) for o in lines}

    with serve_app(create_app(store, session=session)) as base:
        url = f"{base}/api/remove-background/"
        dry_code, dry = run(url, "--dry-run")
        real_code, real = run(url)
    assert dry.pop("fine.jpg") == ("would process", None)
    assert real.pop("fine.jpg") == ("done", None)
    assert dry == real
    assert dry_code == real_code == 1
    assert real["empty.png"] == ("failed", "empty file (0 bytes)")
    assert real["wide.png"][1].startswith(f"image too large: {MAX_SIDE + 1}x10 pixels")
    assert real["padded.jpg"][1].startswith("file too large: 10.0 MB")
    assert store.list()[0].credits == 9  # only fine.jpg was sent


# 5: output folders are made when the first output is written, not before.

def test_no_output_folder_when_nothing_is_written(tmp_path, session):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    for inputs, out in (([str(tmp_path / "missing.jpg")], tmp_path / "o3"),
                        ([str(tmp_path / "in")], tmp_path / "deep" / "o4")):
        summary = bgremove.Batch(inputs, out).run(session, workers=1)
        assert summary.count(Status.done) == 0
        assert not out.exists()
    assert not (tmp_path / "deep").exists()


def test_a_run_that_stops_before_the_report_leaves_no_report_folder(samples, tmp_path):
    from bgremove.cli.commands import remove as jobs
    from bgremove.cli.settings import load as load_settings
    from bgremove.errors import UsageError

    photo = small_jpeg(samples, tmp_path / "x.jpg")
    settings = load_settings({"device": "no-such-device"},
                             environ={"XDG_CONFIG_HOME": str(tmp_path / "no-config")})
    job = jobs.Job(inputs=[str(photo)], output=str(tmp_path / "o5"),
                   report=tmp_path / "reports" / "r.json")
    with pytest.raises(UsageError, match="no-such-device"):
        jobs.run(job, settings)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "o5").exists()


def test_an_output_folder_inside_the_input_is_still_not_walked(samples, tmp_path, session):
    # The walk reaches in/sub/ after the first outputs have made in/sub/out/ (one worker takes
    # two images at a time): the outputs there are not inputs.
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("not an image")
    for name in ("a/1.jpg", "a/2.jpg", "a/3.jpg"):
        small_jpeg(samples, folder / name, width=48)
    out = folder / "sub" / "out"
    summary = bgremove.Batch([str(folder)], out, options=FAST).run(session, workers=1)
    assert summary.count(Status.done) == 3 and summary.count(Status.not_image) == 1
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == ["a/1.webp", "a/2.webp", "a/3.webp"]


# 7: the rate counts processed images only, and waits for a few before it says anything.

def test_the_rate_waits_for_a_few_images_then_counts_only_those():
    from bgremove.cli.progress import Rate

    rate = Rate(started=100.0)
    rate.update(processed=0, now=100.001)  # a thousand up-to-date outputs skipped: no images
    rate.update(processed=2, now=100.012)  # two workers finishing together
    assert rate.per_second(100.012) is None  # not 167 img/s
    assert rate.eta(remaining=58, now=100.012) is None
    rate.update(processed=3, now=100.6)
    assert rate.per_second(100.6) == pytest.approx(5.0)
    assert rate.eta(remaining=10, now=100.6) == pytest.approx(2.0)


def test_a_slow_start_shows_a_rate_after_two_seconds():
    from bgremove.cli.progress import Rate

    rate = Rate(started=0.0)
    rate.update(processed=1, now=1.0)
    assert rate.per_second(1.0) is None
    rate.update(processed=1, now=2.5)
    assert rate.per_second(2.5) == pytest.approx(0.4)
