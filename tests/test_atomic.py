"""Atomic writes (bgremove/atomic.py): one shape of part file, recognised where leftovers are
cleaned, and no change of the process-wide umask while outputs or models are written."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from bgremove.atomic import create_part, is_part_of, part_name, write_atomic
from bgremove.models import BUNDLED_PATH
from tests.test_models import mirror, sha256  # noqa: F401 - the model mirror fixture


@pytest.fixture
def umask_calls(monkeypatch) -> list[int]:
    """Every os.umask call made while the test runs (the umask is process-wide: changing it
    races every other thread that creates a file)."""
    calls: list[int] = []
    real = os.umask

    def recording(mask: int) -> int:
        calls.append(mask)
        return real(mask)

    monkeypatch.setattr(os, "umask", recording)
    return calls


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read here, before any test records the calls


def test_a_part_file_is_recognised_as_its_outputs_only(tmp_path):
    part = part_name(tmp_path / "cat.webp")
    assert part.parent == tmp_path
    assert is_part_of(part.name, {"cat.webp"})
    assert not is_part_of(part.name, {"dog.webp"})
    assert not is_part_of("cat.webp", {"cat.webp"})
    assert not is_part_of(".cat.webp.notatoken.part", {"cat.webp"})


def test_write_atomic_follows_the_umask_and_leaves_no_part_file(tmp_path):
    dest = tmp_path / "a" / "b.bin"
    write_atomic(dest, b"data")
    assert dest.read_bytes() == b"data"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["b.bin"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~UMASK
    fd, part = create_part(dest, mode=0o600)
    os.close(fd)
    assert stat.S_IMODE(part.stat().st_mode) == 0o600 & ~UMASK


def test_a_batch_and_a_model_pull_leave_the_umask_alone(samples, tmp_path, mirror,  # noqa: F811
                                                         umask_calls):
    import bgremove
    from bgremove.models.pull import Checksum, download

    photo = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    with bgremove.new_session(threads=1) as session:
        summary = bgremove.remove_batch([photo, photo.with_name(photo.name)], tmp_path / "out",
                                        session=session, workers=2,
                                        options=bgremove.RemovalOptions(mode=bgremove.Mode.fast))
    assert summary.exit_code == 0 and list((tmp_path / "out").iterdir())

    base, root = mirror
    shutil.copy(BUNDLED_PATH, root / "m.onnx")
    dest = tmp_path / "cache" / "m.onnx"
    download(f"{base}/m.onnx", dest, Checksum.parse(sha256(BUNDLED_PATH)))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~UMASK
    assert umask_calls == []
    assert [p.name for p in Path(dest.parent).iterdir()] == ["m.onnx"]
