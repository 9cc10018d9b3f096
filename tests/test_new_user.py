"""A new user's first hour: the mistakes people make and the edges they meet, each with the clear
message and the safe outcome they should get. Everything runs the real CLI: in a subprocess where
the exit status or a signal is the point, else in this process (tests/inprocess.py: the same app,
without half a second of start-up per call)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, cli_env, run_cli
from tests.inprocess import invoke
from tests.test_pipes import small_copy


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# 1. A plain install runs: bgremove imports nothing its default install does not declare.

def declared_distributions() -> set[str]:
    """The distributions a plain `pip install bgremove` brings, by pyproject.toml."""
    import re

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name, _, marker = requirement.partition(";")
        if "python_version < '3.11'" in marker and sys.version_info >= (3, 11):
            continue
        names.add(re.split(r"[<>=!~\[ ]", name.strip())[0].lower().replace("_", "-"))
    return names


# Run the CLI with any import that a bgremove module makes of a package outside the declared
# distributions refused, as a venv with no extras would refuse it.
GUARD = """
import builtins, sys
from importlib.metadata import packages_distributions
declared = set(sys.argv.pop(1).split(","))
owners = packages_distributions()
real_import = builtins.__import__
def guarded(name, globals=None, locals=None, fromlist=(), level=0):
    caller = (globals or {}).get("__name__", "")
    top = name.split(".")[0]
    if (level == 0 and caller.startswith("bgremove") and top != "bgremove"
            and top not in sys.stdlib_module_names
            and not {d.lower().replace("_", "-") for d in owners.get(top, [])} & declared):
        raise ModuleNotFoundError(f"undeclared import {name!r} in {caller}", name=top)
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = guarded
sys.argv[0] = "bgremove"
from bgremove.__main__ import main
main()
"""


def test_the_default_install_needs_nothing_it_does_not_declare(samples, tmp_path):
    declared = ",".join(sorted(declared_distributions()))
    for args in (["--version"], ["--help"], ["remove", "--help"], ["models", "list"],
                 [str(samples / "coffee.png"), "-o", str(tmp_path / "out"), "--mode", "quality",
                  "--preserve-shadows", "-f", "png"]):
        proc = subprocess.run([sys.executable, "-c", GUARD, declared, *args],
                              capture_output=True, env=cli_env(), timeout=300)
        assert proc.returncode == 0, (args, proc.stderr.decode())
    assert (tmp_path / "out" / "coffee.png").exists()


# 2. Output and input in one folder: nothing is overwritten, outputs are never taken for inputs.

def test_output_folder_that_is_the_input_folder_keeps_every_original(samples, tmp_path):
    same = tmp_path / "same"
    small_copy(samples / "astronaut.jpg", same / "astronaut.jpg")
    small_copy(samples / "chelsea.webp", same / "chelsea.webp")
    originals = {p.name: digest(p) for p in same.iterdir()}
    for extra in ([], ["--overwrite"], ["--overwrite", "-f", "png"]):
        proc = invoke(str(same), "-o", str(same), "--mode", "fast", *extra)
        assert proc.returncode == 0, proc.stderr.decode()
    assert {p.name: digest(p) for p in same.iterdir() if p.name in originals} == originals
    assert files(same) == ["astronaut.cutout.png", "astronaut.cutout.webp", "astronaut.jpg",
                           "chelsea.cutout.png", "chelsea.cutout.webp", "chelsea.webp"]
    assert Image.open(same / "chelsea.cutout.webp").mode == "RGBA"
    # A single file written into its own folder, or onto itself.
    proc = run_cli(str(same / "chelsea.webp"), "-o", str(same / "chelsea.webp"))
    assert proc.returncode == 2 and "the input itself" in proc.stderr.decode()
    assert digest(same / "chelsea.webp") == originals["chelsea.webp"]


# 3. Permissions. Root reads and writes anything: the CLI then runs without that power.

def run_powerless(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "bgremove", *args]
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    return subprocess.run(command, capture_output=True, env=cli_env(), timeout=300, cwd=cwd)


def test_unreadable_inputs_fail_with_their_reason(samples, tmp_path):
    src = tmp_path / "in"
    small_copy(samples / "coffee.png", src / "ok.png")
    small_copy(samples / "rocket.jpg", src / "locked.jpg").chmod(0)
    small_copy(samples / "chelsea.webp", src / "private" / "cat.webp")
    (src / "private").chmod(0)
    try:
        proc = run_powerless(str(src), "-o", str(tmp_path / "out"), "--mode", "fast", "--json")
    finally:
        (src / "private").chmod(0o755)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    by_input = {o["input"]: o for o in map(json.loads, proc.stdout.decode().splitlines())}
    locked = by_input[str(src / "locked.jpg")]
    assert locked["status"] == "failed" and "Permission denied" in locked["error"]
    private = by_input[str(src / "private")]
    assert private["status"] == "failed" and "cannot read this folder" in private["error"]
    assert by_input[str(src / "ok.png")]["status"] == "done"
    assert "locked.jpg" in stderr and "private" in stderr


def test_an_output_folder_that_cannot_be_written_stops_at_once(samples, tmp_path):
    src = tmp_path / "in"
    for i in range(5):
        small_copy(samples / "coffee.png", src / f"{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    started = time.monotonic()
    proc = run_powerless(str(src), "-o", str(out), "--mode", "fast")
    stderr = proc.stderr.decode()
    assert proc.returncode == 5, stderr
    assert f"cannot write to the output folder {out}" in stderr and "Permission denied" in stderr
    assert "Traceback" not in stderr and "not processed (5)" in stderr
    assert time.monotonic() - started < 30


# 4. Remote setup mistakes stop within seconds, whatever the batch size.

def many_small(samples: Path, folder: Path, count: int = 43) -> Path:
    folder.mkdir()
    photo = Image.open(samples / "coffee.png").convert("RGB").resize((32, 32))
    for i in range(count):
        photo.save(folder / f"{i:02}.jpg")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NotTheApi(http.server.BaseHTTPRequestHandler):
    """A web server that is not the API: 404 here, a login page there."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.startswith("/login"):
            body, status, kind = b"<html>please log in</html>", 200, "text/html"
        else:
            body, status, kind = b"<html>not found</html>", 404, "text/html"
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def not_the_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTheApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("where, says", [
    ("refused", "cannot reach the API at"),
    ("/api/remove-backgroud/", "does not answer as the Background Removal API does (HTTP 404"),
    ("/login", "does not answer as the Background Removal API does (HTTP 200, text/html"),
])
def test_a_wrong_api_address_stops_the_batch_within_seconds(samples, tmp_path, not_the_api,
                                                            where, says):
    src = many_small(samples, tmp_path / "in")
    url = f"http://127.0.0.1:{free_port()}/api/" if where == "refused" else not_the_api + where
    started = time.monotonic()
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--backend", "remote",
                   "--api-url", url, env=cli_env(BGREMOVE_API_KEY="sk-test-0123456789"))
    elapsed = time.monotonic() - started
    stderr = proc.stderr.decode()
    assert proc.returncode == 5, stderr
    assert says in stderr and url in stderr
    assert "not processed (43)" in stderr and stderr.count(says) == 1
    assert elapsed < 10, f"took {elapsed:.1f} s"


# 5. and 6. -o with an image extension, and a background colour alone.

def test_o_with_a_jpeg_name_writes_a_jpeg_on_white(samples, tmp_path):
    proc = invoke(str(samples / "astronaut.jpg"), "-o", str(tmp_path / "out.jpg"), "--mode",
                   "fast")
    assert proc.returncode == 0, proc.stderr.decode()
    image = Image.open(tmp_path / "out.jpg")
    assert image.format == "JPEG" and image.mode == "RGB"
    assert np.abs(np.asarray(image)[5, 505].astype(int) - 255).max() <= 3
    assert not (tmp_path / "out.jpg").is_dir()


@pytest.mark.parametrize("args, says", [
    (["-o", "out.gif"], "bgremove writes PNG, WebP and JPEG, not GIF"),
    (["-o", "out.png", "x.png"], "there is more than one input; -o takes a folder"),
    (["-o", "out.jpg", "--include-mask"], "JPEG has no transparency"),
    (["-o", "out", "-f", "gif"], "'gif' is not valid: expected one of png, webp, jpeg"),
    (["-o", "out", "--background-color", "red", "--include-mask"], "give one of them"),
])
def test_impossible_outputs_are_usage_errors(samples, tmp_path, args, says):
    proc = run_cli(str(samples / "coffee.png"), *args, cwd=tmp_path)
    assert proc.returncode == 2 and says in proc.stderr.decode(), proc.stderr.decode()
    assert files(tmp_path) == []


def test_an_image_name_for_a_folder_of_images_says_so(samples, tmp_path):
    proc = run_cli(str(samples), "-o", "out.png", cwd=tmp_path)
    assert proc.returncode == 2 and "the input is a folder" in proc.stderr.decode()


def test_a_background_colour_alone_fills_the_background(samples, tmp_path):
    proc = invoke(str(samples / "astronaut.jpg"), "-o", str(tmp_path / "out.png"),
                   "--background-color", "red", "--mode", "fast")
    assert proc.returncode == 0, proc.stderr.decode()
    image = Image.open(tmp_path / "out.png")
    assert image.mode == "RGB" and image.getpixel((505, 5)) == (255, 0, 0)


# 7. Huge photos: refused from the header at once, or shrunk with --max-size.

def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def test_a_huge_photo_is_refused_from_its_header_or_shrunk(samples, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "huge.png").write_bytes(png_header_only(15000, 15000))
    big = Image.open(samples / "astronaut.jpg").convert("RGB").resize((9000, 6000))
    big.save(src / "big.jpg", quality=80)
    started = time.monotonic()
    proc = invoke(str(src), "-o", str(tmp_path / "out"), "--mode", "fast")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "huge.png: image is 15000x15000 (225 MP)" in stderr and "--max-size" in stderr
    assert "big.jpg: image is 9000x6000 (54 MP)" in stderr
    assert "DecompressionBomb" not in stderr and "site-packages" not in stderr
    assert time.monotonic() - started < 60

    proc = invoke(str(src / "big.jpg"), "-o", str(tmp_path / "small.png"), "--mode", "fast",
                   "--max-size", "1200")
    assert proc.returncode == 0, proc.stderr.decode()
    assert Image.open(tmp_path / "small.png").size == (1200, 800)


# 8. Ctrl-C at once, while Python and onnxruntime load: exit 130, a summary, a report.

@pytest.mark.parametrize("delay", [0.25, 0.5, 0.9])
def test_ctrl_c_while_starting_up_ends_cleanly(samples, tmp_path, delay):
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bgremove", str(samples), "-o", str(tmp_path / "out"),
         "--report", str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=cli_env())
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    stderr = stderr.decode()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert json.loads(report.read_text())["stopped"] == "interrupted"


# 9. Formats Pillow reads are images; files that are not images are named.

def test_avif_is_an_image_and_skipped_files_are_named(samples, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.open(samples / "chelsea.webp").save(src / "cat.avif")
    (src / "notes.txt").write_text("hello")
    (src / "data.bin").write_bytes(os.urandom(100))
    proc = invoke(str(src), "-o", str(tmp_path / "out"), "--mode", "fast")
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert files(tmp_path / "out") == ["cat.webp"]
    assert "not images: " in stderr and "notes.txt" in stderr and "data.bin" in stderr


def test_a_broken_file_named_as_an_image_fails_where_other_files_are_skipped(samples, tmp_path):
    src = tmp_path / "in"
    small_copy(samples / "astronaut.jpg", src / "good.jpg")
    (src / "empty.jpg").write_bytes(b"")
    (src / "html.png").write_text("<html>404 Not Found</html>")  # a download that went wrong
    (src / ".DS_Store").write_bytes(b"\0" * 10)
    (src / "notes.txt").write_text("hello")
    for extra in (["--dry-run"], []):  # the dry run first: it writes nothing
        proc = invoke(str(src), "-o", str(tmp_path / "out"), "--mode", "fast", "--json", *extra)
        status = {Path(line["input"]).name: (line["status"], line["error"])
                  for line in map(json.loads, proc.stdout.decode().splitlines())}
        assert proc.returncode == 1, proc.stderr
        assert status["empty.jpg"] == ("failed", "empty file (0 bytes)")  # dry or not
        assert status["html.png"][0] == "failed" and "not an image" in status["html.png"][1]
        assert status["notes.txt"] == ("not an image", None)
        assert status["good.jpg"][0] == ("would process" if extra else "done")


# 11. Messages.

@pytest.mark.parametrize("args, says", [
    (["model", "list"], "Did you mean `bgremove models list`?"),
    (["remvoe", "x.jpg", "-o", "y/"], "Did you mean `bgremove remove x.jpg -o`?"),
])
def test_a_mistyped_command_gets_a_suggestion(tmp_path, args, says):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and says in proc.stderr.decode()


@pytest.mark.parametrize("word", ["frame.jpg", "serve.png", "photos/", "./models", "Serve"])
def test_a_missing_input_close_to_a_command_is_a_missing_input(tmp_path, word):
    proc = invoke(word, "-o", str(tmp_path / "out"), cwd=tmp_path)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and "Did you mean" not in stderr, stderr
    assert "no such file or folder" in stderr and word.strip("./") in stderr


def test_help_shows_no_python_type_names():
    proc = run_cli("remove", "-h")
    assert "list[str]" not in proc.stdout.decode() and "INPUT..." in proc.stdout.decode()


@pytest.mark.parametrize("args, says", [
    (["--mode", "bogus"], "'bogus' is not one of 'fast', 'balanced', 'quality'"),
    (["--workers", "0"], "'--workers': must be 1 or more, not '0'"),
    (["--max-size", "big"], "'--max-size': 'big' is not a whole number"),
])
def test_bad_option_values_are_told_in_plain_words(tmp_path, args, says):
    proc = run_cli(str(tmp_path), "-o", str(tmp_path / "out"), *args)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and says in stderr
    assert "Value error" not in stderr and "Input should" not in stderr


def test_a_missing_file_is_reported_once(tmp_path):
    proc = run_cli(str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "out"))
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert stderr.count("missing.jpg") == 1 and "img/s" not in stderr


def test_a_file_named_twice_is_processed_once_under_its_plain_name(samples, tmp_path):
    photo = small_copy(samples / "astronaut.jpg", tmp_path / "astronaut.jpg")
    proc = invoke(str(photo), str(tmp_path / "." / "astronaut.jpg"), "-o", str(tmp_path / "out"),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    assert files(tmp_path / "out") == ["astronaut.webp"]
    assert [json.loads(line)["status"] for line in proc.stdout.decode().splitlines()] == ["done"]


def test_an_empty_folder_says_no_images_were_found(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli(str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0 and "no images found in" in proc.stderr.decode()


def test_the_reference_lists_every_exit_code():
    page = (ROOT / "docs" / "exit-codes.md").read_text()
    table = page.split("| exit code | meaning |")[1].split("\n\n")[0]
    for code in (0, 1, 2, 3, 4, 5, 130):
        assert f"\n| {code} |" in table




# Siblings found by trying the rest of the surface the same way.

def outcomes(proc: subprocess.CompletedProcess[bytes]) -> dict[str, tuple[str, str | None]]:
    return {line["input"]: (line["status"], line["output"])
            for line in map(json.loads, proc.stdout.decode().splitlines())}


def test_two_folders_with_the_same_names_never_overwrite_each_other(samples, tmp_path):
    small_copy(samples / "astronaut.jpg", tmp_path / "x" / "a.jpg")
    small_copy(samples / "rocket.jpg", tmp_path / "y" / "a.jpg")
    proc = invoke("x", "y", "-o", "out", "--mode", "fast", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    assert outcomes(proc) == {"x/a.jpg": ("done", "out/a.webp"), "y/a.jpg": ("failed", None)}
    assert "same output as x/a.jpg" in proc.stderr.decode()
    with Image.open(tmp_path / "out" / "a.webp") as cutout:  # the astronaut, not the rocket
        assert cutout.size == Image.open(tmp_path / "x" / "a.jpg").size


def test_a_listed_file_runs_once_however_it_is_written(samples, tmp_path):
    small_copy(samples / "coffee.png", tmp_path / "c.png")
    listing = f"c.png\nc.png\n./c.png\n{tmp_path}/c.png\n".encode()
    proc = invoke("--files-from", "-", "-o", "out", "--json", input=listing, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert outcomes(proc) == {"c.png": ("done", "out/c.webp")}
    assert files(tmp_path / "out") == ["c.webp"]


def test_listing_a_folder_into_itself_again_does_nothing_new(samples, tmp_path):
    small_copy(samples / "astronaut.jpg", tmp_path / "shop" / "a.jpg")
    for _ in range(2):
        listing = "".join(f"shop/{p.name}\n" for p in (tmp_path / "shop").iterdir()).encode()
        proc = invoke("--files-from", "-", "-o", ".", "-q", input=listing, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert files(tmp_path / "shop") == ["a.cutout.webp", "a.jpg"]


def test_a_broken_link_in_a_folder_fails_with_its_path(samples, tmp_path):
    small_copy(samples / "astronaut.jpg", tmp_path / "in" / "ok.jpg")
    (tmp_path / "in" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    proc = invoke("in", "-o", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    assert outcomes(proc)["in/gone.jpg"][0] == "failed" and "in/gone.jpg" in proc.stderr.decode()


def test_a_report_that_cannot_be_written_is_refused_before_any_work(samples, tmp_path):
    photo = small_copy(samples / "astronaut.jpg", tmp_path / "a.jpg")
    (tmp_path / "reports").mkdir()
    for report, says in [(str(tmp_path / "reports"), "is a folder"),
                         ("/proc/none/r.json", "cannot write there")]:
        proc = run_cli(str(photo), "-o", str(tmp_path / "out"), "--report", report)
        assert proc.returncode == 2 and says in proc.stderr.decode()
        assert b"Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_jpeg_on_the_command_line_outranks_a_mask_from_the_config(samples, tmp_path):
    photo = small_copy(samples / "astronaut.jpg", tmp_path / "a.jpg")
    config = tmp_path / "config.toml"
    config.write_text("include_mask = true\n")
    proc = invoke(str(photo), "-o", str(tmp_path / "cut.jpg"), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "cut.jpg").format == "JPEG"


def test_paths_piped_in_start_work_before_the_list_ends(samples, tmp_path):
    small_copy(samples / "astronaut.jpg", tmp_path / "a.jpg")
    proc = subprocess.Popen([sys.executable, "-m", "bgremove", "--files-from", "-", "-o", "out",
                             "-q"], stdin=subprocess.PIPE, cwd=tmp_path, env=cli_env())
    try:
        proc.stdin.write(b"a.jpg\n")
        proc.stdin.flush()  # and the list stays open, as a slow `find` keeps it
        deadline = time.monotonic() + 60
        while not (tmp_path / "out" / "a.webp").exists():
            assert time.monotonic() < deadline, "nothing was done while the list was open"
            time.sleep(0.1)
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
