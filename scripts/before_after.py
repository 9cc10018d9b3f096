"""Make the README's picture, docs/images/before-after.png: photos from samples/ above the
cut-outs bgremove makes of them, each cut-out on a checkerboard so that what is transparent shows.

    python scripts/before_after.py            # rewrites docs/images/before-after.png

The cut-outs are made by the command line itself, as the README's caption says
(`bgremove samples/ -o OUT --mode quality --output-format png`), so the picture shows what a user
gets; run it again after a change that alters pixels (a new matte, another default model).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PICTURE = ROOT / "docs" / "images" / "before-after.png"
# Hair, fur and a product: the three things people check a cut-out on first.
PHOTOS = ["astronaut.jpg", "chelsea.webp", "coffee.png"]
HEIGHT = 240  # of each tile: the three pairs side by side stay under 1,000 px wide
GAP = 8
SQUARE = 12  # of the checkerboard, in the tile's pixels


def cut_out(folder: Path, mode: str) -> None:
    photos = [str(SAMPLES / name) for name in PHOTOS]
    subprocess.run([sys.executable, "-m", "bgremove", *photos, "-o", str(folder), "--mode", mode,
                    "--output-format", "png", "--overwrite", "-q"], check=True)


def checkerboard(size: tuple[int, int]) -> Image.Image:
    board = Image.new("RGB", size, (255, 255, 255))
    grey = Image.new("RGB", (SQUARE, SQUARE), (204, 204, 204))
    for y in range(0, size[1], SQUARE):
        for x in range((y // SQUARE) % 2 * SQUARE, size[0], 2 * SQUARE):
            board.paste(grey, (x, y))
    return board


def tile(image: Image.Image) -> Image.Image:
    width = round(image.width * HEIGHT / image.height)
    return image.resize((width, HEIGHT), Image.Resampling.LANCZOS)


def compose(folder: Path) -> Image.Image:
    columns = []
    for name in PHOTOS:
        photo = tile(Image.open(SAMPLES / name).convert("RGB"))
        # Scaled before it is laid on the board, so the squares keep their size in every tile;
        # RGBa (premultiplied) so that no colour of the cut-away background bleeds into the edge.
        cutout = Image.open(folder / (Path(name).stem + ".png")).convert("RGBa")
        cutout = tile(cutout).convert("RGBA")
        board = checkerboard(cutout.size)
        board.paste(cutout, (0, 0), cutout)
        columns.append((photo, board))
    width = sum(photo.width for photo, _ in columns) + GAP * (len(columns) - 1)
    picture = Image.new("RGB", (width, 2 * HEIGHT + GAP), (255, 255, 255))
    x = 0
    for photo, board in columns:
        picture.paste(photo, (x, 0))
        picture.paste(board, (x, HEIGHT + GAP))
        x += photo.width + GAP
    return picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="quality", help="the mode the caption names")
    parser.add_argument("--output", type=Path, default=PICTURE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cut_out(Path(folder), args.mode)
        picture = compose(Path(folder))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.output, optimize=True)
    print(f"wrote {args.output} ({picture.width}x{picture.height}, "
          f"{args.output.stat().st_size // 1024} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
