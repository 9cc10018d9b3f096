"""Make the README's before/after picture of a catalogue job, docs/images/product-before-after.jpg.

    python scripts/product_picture.py

Runs the README's catalogue command on three of samples/ (with a square canvas of 400 px, so the
picture stays small), then sets each photo (top row, fitted to the same square) above what
bgremove made of it (bottom row). Only the layout of the picture is done here; every product
image in it is bgremove's output, pasted as it is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "product-before-after.jpg"
PHOTOS = ("coffee.png", "camera.png", "rocket.jpg")
SIDE, GAP = 400, 12
COMMAND = ["--crop", "--canvas", f"{SIDE}x{SIDE}", "--margin", "6%", "--position", "bottom",
           "--background-color", "white", "-f", "jpeg"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        products, web = Path(tmp, "products"), Path(tmp, "web")
        products.mkdir()
        for name in PHOTOS:
            shutil.copy(ROOT / "samples" / name, products / name)
        bgremove = Path(sys.executable).with_name("bgremove")
        subprocess.run([str(bgremove), str(products), "-o", str(web), *COMMAND, "-q"], check=True)
        width = len(PHOTOS) * SIDE + (len(PHOTOS) + 1) * GAP
        sheet = Image.new("RGB", (width, 2 * SIDE + 3 * GAP), (64, 64, 64))
        for i, name in enumerate(PHOTOS):
            x = GAP + i * (SIDE + GAP)
            before = ImageOps.pad(Image.open(products / name).convert("RGB"), (SIDE, SIDE),
                                  color=(64, 64, 64))
            sheet.paste(before, (x, GAP))
            after = Image.open(web / f"{Path(name).stem}.jpg")
            assert after.size == (SIDE, SIDE)
            sheet.paste(after, (x, 2 * GAP + SIDE))
        draw = ImageDraw.Draw(sheet)
        draw.text((GAP + 4, GAP + 4), "photo", fill=(255, 255, 255))
        draw.text((GAP + 4, 2 * GAP + SIDE + 4), "bgremove " + " ".join(COMMAND), fill=(0, 0, 0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(OUT, quality=85, optimize=True)
    print(OUT)


if __name__ == "__main__":
    main()
