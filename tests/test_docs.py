"""The README is a front door and docs/ the reference: the README stays short, every link between
them works on any Git host, nothing the README used to say was lost when it moved, and the
README's comparison with rembg quotes BENCHMARKS.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# Every `##` and `###` heading of the README before it was split (commit 9cec68d, and main's
# 80b15cc, which added the page for people and the model guide), each of which must still head a
# section of the README or of a page in docs/, at any level. A heading renamed on its way is
# listed with its new name.
HEADINGS_BEFORE_THE_SPLIT = [
    "Set up on a fresh machine", "Usage", "Options", "What the modes do on the local engine",
    "Progress, summary and exit codes", "Python", "Remote backend",
    "Self-hosted server (`bgremove serve`)", "The page for people", "Managing keys", "Calling it",
    "Errors and limits", "Several replicas on PostgreSQL", "Pipelines and CI jobs",
    "Hot folder (`--watch`)", "Video frames (`bgremove frames`)", "Batches on a Dask cluster",
    "Configuration", "Shell completion", "Models", "Which model", "Model files of your own",
    "Devices", "Performance", "Install size", "The bundled model",
]
RENAMED = {"Python": "Python library"}


def prose(text: str) -> str:
    """The text outside code blocks and code spans, where links and headings live."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def headings(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return [h.strip() for h in re.findall(r"^#{1,6} (.+)$", text, re.M)]


def slug(heading: str) -> str:
    # GitHub's rule; for the headings links may point at (letters, digits and spaces only, see
    # below) GitLab's, Gitea's and Bitbucket's give the same.
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def links(page: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(page.read_text()))


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 250


def test_every_page_of_the_reference_is_linked_from_the_readme():
    linked = {(ROOT / target.split("#")[0]).resolve() for target in links(README)}
    assert list(DOCS.glob("*.md")), "docs/ has the reference"
    assert [page.name for page in DOCS.glob("*.md") if page.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_each_page_has_one_title(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    titles = [line for line in text.splitlines() if line.startswith("# ")]
    assert text.startswith("# ") and len(titles) == 1, titles


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_work_on_any_git_host(page):
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            assert target.startswith(("https://", "http://", "mailto:")), target
            continue
        path, _, anchor = target.partition("#")
        assert not path.startswith("/"), f"{target}: a host-relative link works on one host only"
        file = (page.parent / path).resolve() if path else page.resolve()
        assert file.is_relative_to(ROOT) and file.exists(), f"{page.name}: {target} is missing"
        if anchor:
            assert file.suffix == ".md", target
            matching = [h for h in headings(file) if slug(h) == anchor]
            assert matching, f"{page.name}: no heading in {file.name} for #{anchor}"
            # Hosts differ on punctuation, code and repeated hyphens in anchors: link to the
            # page instead, or to a heading of plain words.
            assert re.fullmatch(r"[A-Za-z0-9 ]+", matching[0]), f"{target}: not portable"


def test_nothing_was_lost_in_the_move():
    found = {heading for page in PAGES for heading in headings(page)}
    lost = [h for h in HEADINGS_BEFORE_THE_SPLIT if RENAMED.get(h, h) not in found]
    assert lost == []


def test_the_picture_is_there_and_small_enough_for_a_front_page():
    picture = DOCS / "images" / "before-after.png"
    assert "](docs/images/before-after.png)" in README.read_text()
    assert "scripts/before_after.py" in README.read_text()  # how it is made again
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width <= 1200
    assert picture.stat().st_size < 1024 * 1024


def test_the_comparison_with_rembg_quotes_the_benchmarks():
    section = README.read_text().split("## How it compares with rembg", 1)[1].split("\n## ")[0]
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    numbers = re.findall(r"\d+\.\d+", section)
    assert len(numbers) >= 8
    assert [n for n in numbers if not re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", benchmarks)] \
        == []
