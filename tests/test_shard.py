"""`--shard K/N`: N runners of a CI matrix split one input set with no overlap and no gap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bgremove.errors import UsageError
from bgremove.options import OutputFormat
from bgremove.plan import Planner, Shard
from tests.conftest import run_cli


def make_set(root: Path, count: int = 30) -> Path:
    """`count` tiny images in nested folders, plus a pair whose outputs would share a name."""
    src = root / "assets"
    for i in range(count):
        path = src / f"group{i % 4}" / f"img{i:02}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (i, 0, 0)).save(path)
    Image.new("RGB", (4, 4)).save(src / "pair.png")
    Image.new("RGB", (4, 4)).save(src / "pair.jpg")
    return src


def dests(src: Path, out: Path, shard: Shard | None = None) -> set[Path]:
    return {item.dest for item in Planner([str(src)], str(out), OutputFormat.webp, shard=shard)}


def test_parts_are_disjoint_and_cover_the_set(tmp_path):
    src = make_set(tmp_path)
    out = tmp_path / "out"
    everything = dests(src, out)
    assert len(everything) == 32
    parts = [dests(src, out, Shard(k, 3)) for k in (1, 2, 3)]
    assert all(parts)  # 32 files: every runner gets some
    assert parts[0] | parts[1] | parts[2] == everything
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    # Output names are chosen over the whole set: the pair keeps its long names in its part.
    assert {out / "pair.png.webp", out / "pair.jpg.webp"} <= everything
    assert Shard(1, 1).holds("anything")


def test_a_file_keeps_its_part_when_the_set_changes(tmp_path):
    src = make_set(tmp_path)
    out = tmp_path / "out"
    before = [dests(src, out, Shard(k, 4)) for k in range(1, 5)]
    Image.new("RGB", (4, 4)).save(src / "group0" / "new.png")
    (src / "group1" / "img01.png").unlink()
    after = [dests(src, out, Shard(k, 4)) for k in range(1, 5)]
    for old, new in zip(before, after, strict=True):
        assert old - {out / "group1" / "img01.webp"} <= new


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "3", "a/b", "1/3/2", "-1/3", ""])
def test_bad_shard_syntax_is_refused(text):
    with pytest.raises(UsageError, match="K/N"):
        Shard.parse(text)


def test_shard_on_the_command_line(tmp_path):
    src = make_set(tmp_path, count=12)
    seen: list[str] = []
    for k in (1, 2, 3):
        proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--dry-run", "--json",
                       "--shard", f"{k}/3")
        assert proc.returncode == 0, proc.stderr.decode()
        seen += [json.loads(line)["input"] for line in proc.stdout.decode().splitlines()]
    assert len(seen) == len(set(seen)) == 14
    assert set(seen) == {str(p) for p in src.rglob("*.*")}

    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--shard", "4/3")
    assert proc.returncode == 2 and "K/N" in proc.stderr.decode()
