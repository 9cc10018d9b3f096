"""Download a model into the cache: streamed, checksummed, renamed into place only once verified.

The bytes go to a `.part` file next to the destination while they are hashed; only a file whose
checksum matches is renamed to `<name>.onnx`. A wrong checksum, a broken connection or Ctrl-C
removes the `.part` file, so a half-downloaded or tampered model never counts as present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bgremove.atomic import AtomicFile
from bgremove.errors import DownloadFailed

CHUNK = 1 << 20


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # md5 | sha256
    digest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """`md5:HEX` or `sha256:HEX` (rembg's and pooch's notation); bare hex by its length."""
        algorithm, _, digest = text.strip().lower().rpartition(":")
        algorithm = algorithm or {32: "md5", 64: "sha256"}.get(len(digest), "")
        expected_len = {"md5": 32, "sha256": 64}.get(algorithm)
        if expected_len is None or len(digest) != expected_len or not _is_hex(digest):
            raise ValueError(f"not a checksum: {text!r} (expected sha256:HEX or md5:HEX)")
        return cls(algorithm, digest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest}"

    def of_file(self, path: Path) -> Checksum:
        h = hashlib.new(self.algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return Checksum(self.algorithm, h.hexdigest())


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _cause(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


Progress = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None)


def download(url: str, dest: Path, checksum: Checksum, *, progress: Progress | None = None,
             client=None) -> Path:
    """Fetch `url` into `dest`, verified against `checksum`. Raises DownloadFailed.

    `client` is an httpx.Client (tests may pass one with a custom transport); by default a new one
    follows redirects (GitHub's release links redirect) and honours the usual proxy variables.
    """
    import httpx

    try:
        part = AtomicFile(dest)  # 0666 less the umask: a model cache is shared
    except OSError as exc:
        raise DownloadFailed(f"cannot write to the model cache {dest.parent}: "
                             f"{_cause(exc)}") from None
    own_client = client is None
    if own_client:
        client = httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0))
    try:
        h = hashlib.new(checksum.algorithm)
        with part as out:  # renamed into place only if the block ends without an error
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise DownloadFailed(f"cannot download {url}: HTTP {response.status_code} "
                                         f"{response.reason_phrase}".rstrip())
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                if progress:
                    progress(done, total)
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            got = Checksum(checksum.algorithm, h.hexdigest())
            if got != checksum:
                raise DownloadFailed(f"checksum mismatch for {url}: expected {checksum}, got "
                                     f"{got}. The file was discarded; nothing was saved.")
        return dest
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"cannot download {url}: {_cause(exc)}") from None
    except OSError as exc:
        raise DownloadFailed(f"cannot save {dest}: {_cause(exc)}") from None
    finally:
        part.discard()  # nothing left behind, whatever ended the download (none after a commit)
        if own_client:
            client.close()
