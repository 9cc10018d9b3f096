"""Atomic writes (bgremove/atomic.py): one shape of part file, recognised where leftovers are
cleaned, and no change of the process-wide umask while outputs or models are written."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from bgremove.atomic import AtomicFile, create_part, is_part_of, part_name, write_atomic
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
    assert not summary.failed and list((tmp_path / "out").iterdir())

    base, root = mirror
    shutil.copy(BUNDLED_PATH, root / "m.onnx")
    dest = tmp_path / "cache" / "m.onnx"
    download(f"{base}/m.onnx", dest, Checksum.parse(sha256(BUNDLED_PATH)))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~UMASK
    assert umask_calls == []
    assert [p.name for p in Path(dest.parent).iterdir()] == ["m.onnx"]


def test_a_commit_syncs_the_data_before_the_name_and_the_folder_after(tmp_path, monkeypatch):
    """The order that makes an output durable: the part file's data reaches the disk before the
    rename gives it its name, and the folder (the rename) after. Spied, not replaced: the real
    calls run."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        calls.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "a.png", b"data")
    assert calls == ["fsync file", "rename", "fsync folder"]
    calls.clear()
    write_atomic(tmp_path / "b.png", b"data", durable=False)
    assert calls == ["rename"]


def test_a_commit_that_fails_leaves_the_old_file_and_no_part(tmp_path):
    dest = tmp_path / "report.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError), AtomicFile(dest, encoding="utf-8") as out:
        out.write("half of the new")
        raise RuntimeError("the run broke")
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with AtomicFile(dest, encoding="utf-8") as out:
        out.write("new")
    assert dest.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
