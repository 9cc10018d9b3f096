"""Models: list, pull from a mirror (a real HTTP server on 127.0.0.1), choose with --model, and
--device. Every test uses its own empty model cache ($U2NET_HOME), so none touches ~/.u2net.

The mirror serves a copy of the bundled u2netp.onnx. Pulled under rembg's names it could only ever
fail its checksum (those files are not here), so the success path pulls it as a custom model, the
way a company mirror serves its own fine-tuned model: by name, with `--checksum`. The known
models' built-in checksums are exercised by the refusal tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgremove.models import BUNDLED_PATH, KNOWN
from tests.conftest import cli_env, run_cli
from tests.inprocess import invoke


class MirrorHandler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.endswith("/cut-short.onnx"):  # the connection drops half-way through
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\0" * 1000)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path):
    """A model mirror on 127.0.0.1 serving the files put in the returned folder."""
    root = tmp_path / "mirror" / "models"  # served at /models: a base URL with a path
    root.mkdir(parents=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(MirrorHandler, directory=str(root.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models", root
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def env_for(cache: Path, **extra: str) -> dict[str, str]:
    env = cli_env(U2NET_HOME=str(cache), **extra)
    if "BGREMOVE_MODEL_MIRROR" not in extra:
        env.pop("BGREMOVE_MODEL_MIRROR", None)
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def small_photo(samples, tmp_path) -> Path:
    """coffee.png at 128 px: for tests about messages, not about the cut-out."""
    path = tmp_path / "small.png"
    Image.open(samples / "coffee.png").resize((128, 128)).save(path)
    return path


def test_list_on_fresh_cache_shows_bundled_model(cache):
    proc = invoke("models", "list", env=env_for(cache))
    assert proc.returncode == 0, proc.stderr.decode()
    table = proc.stdout.decode()
    assert "u2netp" in table and "bundled" in table
    assert "isnet-general-use" in table and "downloadable" in table
    assert "non-commercial" in table  # bria-rmbg's licence is flagged in the table itself

    doc = json.loads(invoke("models", "list", "--json", env=env_for(cache)).stdout)
    assert doc["cache"] == str(cache)
    rows = {row["name"]: row for row in doc["models"]}
    assert rows["u2netp"]["status"] == "bundled" and Path(rows["u2netp"]["path"]) == BUNDLED_PATH
    assert rows["u2netp"]["checksum"] == f"sha256:{sha256(BUNDLED_PATH)}"
    assert all(r["status"] == "downloadable" for n, r in rows.items() if n != "u2netp")
    assert rows["bria-rmbg"]["commercial_use"] is False
    assert "commercial" in rows["bria-rmbg"]["restriction"]
    assert rows["isnet-general-use"]["input_size"] == 1024 and rows["u2net"]["input_size"] == 320
    assert rows["u2net"]["checksum"] == "md5:60024c5c889badc19c04ad937298a77b"  # rembg's pin
    assert "CPUExecutionProvider" in doc["providers"]["installed"]


def test_pull_from_mirror_verifies_and_main_command_uses_it(mirror, cache, samples, tmp_path):
    base, root = mirror
    shutil.copy(BUNDLED_PATH, root / "acme-products.onnx")
    checksum = f"sha256:{sha256(BUNDLED_PATH)}"
    # the mirror comes from the environment here; the other tests pass --mirror
    env = env_for(cache, BGREMOVE_MODEL_MIRROR=base)

    proc = invoke("models", "pull", "acme-products", "--checksum", checksum, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    pulled = cache / "acme-products.onnx"
    assert proc.stdout.decode().strip() == str(pulled)
    assert pulled.read_bytes() == BUNDLED_PATH.read_bytes()
    assert files_in(cache) == ["acme-products.onnx"]  # no .part file left beside it
    assert f"{base}/acme-products.onnx" in proc.stderr.decode()
    assert "(runs as u2net)" in proc.stderr.decode()  # what its graph says it is (issue 37)

    rows = {r["name"]: r for r in json.loads(invoke("models", "list", "--json", env=env).stdout)
            ["models"]}
    assert rows["acme-products"]["status"] == "custom"
    assert rows["acme-products"]["path"] == str(pulled)

    out = tmp_path / "cut.png"
    proc = invoke(str(samples / "coffee.png"), "-o", str(out), "--model", "acme-products",
                   "--mode", "fast", "-v", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert f"model acme-products ({pulled})" in proc.stderr.decode()
    image = Image.open(out)
    assert image.mode == "RGBA" and image.size == Image.open(samples / "coffee.png").size

    again = invoke("models", "pull", "acme-products", "--checksum", checksum, env=env)
    assert again.returncode == 0 and "already downloaded and verified" in again.stderr.decode()


def test_wrong_checksum_is_refused_and_nothing_is_left(mirror, cache, samples, tmp_path):
    base, root = mirror
    # Not the real u2net: the built-in md5 (rembg's) must catch it.
    (root / "u2net.onnx").write_bytes(b"tampered or truncated model" * 1000)
    proc = invoke("models", "pull", "u2net", "--mirror", base, env=env_for(cache))
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "checksum mismatch" in stderr and "md5:60024c5c889badc19c04ad937298a77b" in stderr
    assert f"{base}/u2net.onnx" in stderr and "Traceback" not in stderr
    assert files_in(cache) == []

    shutil.copy(BUNDLED_PATH, root / "acme.onnx")
    proc = invoke("models", "pull", "acme", "--mirror", base, "--checksum", "sha256:" + "0" * 64,
                   env=env_for(cache))
    assert proc.returncode == 1 and "checksum mismatch" in proc.stderr.decode()
    assert files_in(cache) == []
    # ... and the model is not usable afterwards
    proc = invoke(str(samples / "coffee.png"), "-o", str(tmp_path / "out.png"), "--model", "acme",
                   env=env_for(cache))
    assert proc.returncode == 2 and not (tmp_path / "out.png").exists()


def test_download_cut_short_leaves_nothing(mirror, cache):
    base, _ = mirror
    proc = invoke("models", "pull", "cut-short", "--mirror", base, "--checksum", "md5:" + "0" * 32,
                   env=env_for(cache))
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert f"{base}/cut-short.onnx" in stderr and "Traceback" not in stderr
    assert files_in(cache) == []


def test_unreachable_mirror_says_url_and_cause(cache):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/models"
    proc = invoke("models", "pull", "silueta", "--mirror", url, env=env_for(cache))
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert f"cannot download {url}/silueta.onnx" in stderr
    assert "refused" in stderr.lower() and "Traceback" not in stderr
    assert files_in(cache) == []


def test_missing_file_on_mirror_is_reported(mirror, cache):
    base, _ = mirror
    proc = invoke("models", "pull", "isnet-anime", "--mirror", base, env=env_for(cache))
    assert proc.returncode == 1
    assert f"{base}/isnet-anime.onnx: HTTP 404" in proc.stderr.decode()


def test_unknown_model_or_missing_file_is_usage_error_listing_models(cache, samples, tmp_path):
    out = tmp_path / "out"
    for model, says in (("nope", "unknown model 'nope'"),
                        (str(tmp_path / "missing.onnx"), "model file not found"),
                        ("u2net", "bgremove models pull u2net")):
        proc = run_cli(str(samples / "coffee.png"), "-o", str(out), "--model", model,
                       env=env_for(cache))
        stderr = proc.stderr.decode()
        assert proc.returncode == 2, (model, stderr)
        assert says in stderr
        if model != "u2net":
            assert "u2netp (bundled)" in stderr and "isnet-general-use" in stderr
    assert not out.exists()
    proc = run_cli("models", "pull", "nope", env=env_for(cache))
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr.decode()


def _cuda_installed() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(_cuda_installed(), reason="this machine's onnxruntime has CUDA")
def test_device_cuda_without_gpu_warns_and_runs_on_cpu(cache, samples, tmp_path):
    out = tmp_path / "cut.webp"
    proc = invoke(str(samples / "coffee.png"), "-o", str(out), "--device", "cuda", "-v",
                   "--mode", "fast", env=env_for(cache))
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert "warning: --device cuda" in stderr and "running on the CPU" in stderr
    assert "on CPU" in stderr  # the verbose line names the provider that actually ran
    assert Image.open(out).mode == "RGBA"


def test_device_cpu_runs_quietly_unknown_device_is_usage_error(cache, small_photo, tmp_path):
    proc = invoke(str(small_photo), "-o", str(tmp_path / "a.png"), "--device", "cpu",
                   "--mode", "fast", "-v", env=env_for(cache))
    assert proc.returncode == 0 and "warning" not in proc.stderr.decode()
    assert "on CPU" in proc.stderr.decode()
    proc = run_cli(str(small_photo), "-o", str(tmp_path / "b.png"), "--device", "gpu",
                   env=env_for(cache))
    assert proc.returncode == 2
    assert "unknown device 'gpu'" in proc.stderr.decode() and "cuda" in proc.stderr.decode()


def test_local_backend_reports_providers():
    from bgremove.backends.local import LocalSession

    backend = LocalSession(device="cpu")
    assert backend.providers == ["CPUExecutionProvider"] and backend.device_warning is None
    if not _cuda_installed():
        fallback = LocalSession(device="cuda")
        assert fallback.providers == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider" in fallback.device_warning


def test_rembg_models_run_from_the_cache_without_downloading(samples, tmp_path, monkeypatch):
    """A known model is found in rembg's own layout too, and rembg's session loads that very file
    (it would try the network otherwise, and there is none). u2netp stands in for the big ones."""
    from bgremove.backends.local import RembgSaliency
    from bgremove.models import find_downloaded

    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "rembg"))
    (tmp_path / "rembg" / "models" / "u2netp").mkdir(parents=True)
    path = tmp_path / "rembg" / "models" / "u2netp" / "u2netp.onnx"
    shutil.copy(BUNDLED_PATH, path)
    assert find_downloaded("u2netp") == path
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "elsewhere"))
    segmenter = RembgSaliency("u2netp", path, threads=1, providers=["CPUExecutionProvider"])
    assert segmenter.providers == ["CPUExecutionProvider"]
    assert os.environ["U2NET_HOME"] == str(tmp_path / "elsewhere")  # restored after loading
    rgb = np.asarray(Image.open(samples / "coffee.png").convert("RGB"))
    saliency = segmenter.predict(rgb)
    assert saliency.shape == rgb.shape[:2] and saliency.max() > 0.9 and saliency.min() < 0.1
    assert not (tmp_path / "elsewhere").exists()


def test_quality_mode_suggests_a_better_downloaded_model(cache, small_photo, tmp_path):
    cache.mkdir()
    # Only the file's presence matters to the hint; the run itself uses the bundled model.
    shutil.copy(BUNDLED_PATH, cache / KNOWN["isnet-general-use"].filename)
    proc = invoke(str(small_photo), "-o", str(tmp_path / "q.png"), "--mode", "quality",
                   env=env_for(cache))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "hint: isnet-general-use is downloaded" in proc.stderr.decode()
    proc = invoke(str(small_photo), "-o", str(tmp_path / "f.png"), "--mode", "fast",
                   env=env_for(cache))
    assert "hint" not in proc.stderr.decode()


def test_in_process_download_reports_progress_and_cleans_up(mirror, tmp_path):
    from bgremove.models.pull import Checksum, DownloadFailed, download

    base, root = mirror
    shutil.copy(BUNDLED_PATH, root / "m.onnx")
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "c" / "m.onnx"
    good = Checksum.parse(sha256(BUNDLED_PATH))  # bare hex: sha256 by its length
    download(f"{base}/m.onnx", dest, good, progress=lambda d, t: seen.append((d, t)))
    size = BUNDLED_PATH.stat().st_size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert dest.read_bytes() == BUNDLED_PATH.read_bytes()

    dest.unlink()
    with pytest.raises(DownloadFailed, match="checksum mismatch"):
        download(f"{base}/m.onnx", dest, Checksum.parse("md5:" + "1" * 32))
    assert files_in(dest.parent) == []
    with pytest.raises(ValueError):
        Checksum.parse("crc32:1234")


def test_every_models_command_has_help_with_example():
    for args in (["models"], ["models", "list"], ["models", "pull"]):
        proc = invoke(*args, "--help")
        assert proc.returncode == 0
        assert "Example: bgremove models" in proc.stdout.decode()
    assert "--device" in invoke("remove", "--help").stdout.decode()


def test_models_list_does_not_need_rembg(cache):
    code = ("import sys; from typer.testing import CliRunner; from bgremove.cli.app import app;"
            "r = CliRunner().invoke(app, ['models', 'list', '--json']); assert r.exit_code == 0;"
            "print('rembg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env_for(cache),
                         check=True).stdout.decode()
    assert out.strip() == "False"


def test_the_cache_is_where_rembg_looks(monkeypatch, tmp_path):
    from bgremove.backends.local import rembg_sessions
    from bgremove.models import cache_dir

    BaseSession = rembg_sessions().base.BaseSession

    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert cache_dir() == Path(BaseSession.legacy_home()) == tmp_path / "data" / ".u2net"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert cache_dir() == Path(BaseSession.legacy_home()) == Path.home() / ".u2net"
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "mine"))
    assert cache_dir() == Path(BaseSession.legacy_home()) == tmp_path / "mine"


# A rembg model run, then rembg used as its own users use it, in one fresh interpreter.
RUN_THEN_USE_REMBG = """
import sys
import numpy as np
from bgremove.backends.local import RembgSaliency
segmenter = RembgSaliency("u2netp", sys.argv[1], threads=1)
assert segmenter.predict(np.zeros((64, 64, 3), np.uint8)).shape == (64, 64)
print(sorted({"rembg.bg", "pymatting", "numba"} & set(sys.modules)))
import rembg
from rembg import new_session, remove
assert callable(remove) and callable(new_session) and rembg.sessions.sessions_class
assert "rembg.bg" in sys.modules
"""


def test_a_rembg_model_runs_without_compiling_rembgs_matting_code():
    # rembg's __init__ imports pymatting, whose numba functions compile on import (~37 s of CPU
    # after an install): a model run needs only rembg's sessions, and rembg itself, asked for
    # afterwards, is whole. Numba's JIT is off here so that this test, which does import rembg
    # whole, does not pay that compile itself (pymatting's functions then stay plain Python).
    proc = subprocess.run([sys.executable, "-c", RUN_THEN_USE_REMBG, str(BUNDLED_PATH)],
                          capture_output=True, env=cli_env(NUMBA_DISABLE_JIT="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "[]"


def test_loading_a_rembg_model_leaves_u2net_home_alone(samples, tmp_path, monkeypatch):
    # The session is shared by threads: no process-wide variable may change while one loads.
    from bgremove.backends.local import RembgSaliency

    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(BUNDLED_PATH, cache / "u2netp.onnx")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "elsewhere"))
    seen: list[str | None] = []
    real = os.environ.__class__.__setitem__

    def recording(self, key, value):
        if key == "U2NET_HOME":
            seen.append(value)
        return real(self, key, value)

    monkeypatch.setattr(os.environ.__class__, "__setitem__", recording)
    model = RembgSaliency("u2netp", cache / "u2netp.onnx", threads=1)
    assert seen == [] and os.environ["U2NET_HOME"] == str(tmp_path / "elsewhere")
    assert model.predict(np.zeros((32, 32, 3), np.uint8)).shape == (32, 32)
