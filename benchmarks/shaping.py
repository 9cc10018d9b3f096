"""Product photos: what the shaping stage (subject box, crop, canvas, background) and colour
profiles cost, and a whole run with `--crop --canvas 1000x1000` against one without.

    python benchmarks/shaping.py [--rounds 3] [--no-write]

1. The shaping stage alone (imaging/compose.finish on a real transparent cut-out: the fast-mode
   cut-outs of the throughput set's 2400-px photos), in CPU milliseconds per megapixel of the
   photo: the subject's box; --crop; --crop --canvas 1000x1000 on white; the same on a
   background image. Medians over the photos and repeats.
2. Colour profiles: the bytes a carried profile adds to each format (ProPhoto and Adobe RGB
   from colord-data), the encode time with and without it, and what the other choice, converting
   the pixels to sRGB (PIL.ImageCms), would cost per megapixel.
3. The whole run on the throughput set (benchmarks/throughput.py's 30 photos, 800-2400 px):
   `bgremove in/ -o out/ --mode fast`, PNG, WebP and JPEG, with and without
   `--crop --canvas 1000x1000`, in alternating rounds, each a fresh process; wall and CPU time
   (the process's rusage), medians.
Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.sections import bars_text, cpu, write_section  # noqa: E402
from benchmarks.throughput import WORK, build_photos  # noqa: E402

PROFILES = Path("/usr/share/color/icc/colord")
BGREMOVE = Path(sys.executable).with_name("bgremove")


def cpu_ms(work, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append((time.process_time() - start) * 1000)
    return min(times)


def stage_costs(photos: list[Path]) -> list[tuple[str, float]]:
    import numpy as np
    from PIL import Image

    import bgremove
    from bgremove.imaging.compose import finish
    from bgremove.imaging.shape import subject_box
    from bgremove.options import RemovalOptions

    back = WORK / "backdrop.jpg"
    Image.open(ROOT / "samples" / "chelsea.webp").convert("RGB").save(back)
    variants = {
        "subject box": None,
        "--crop": RemovalOptions.build(crop=True, output_format="png"),
        "--crop --margin 6%": RemovalOptions.build(crop=True, margin="6%", output_format="png"),
        "--canvas 1000x1000 on white": RemovalOptions.build(
            crop=True, canvas="1000x1000", margin="6%", background_color="white",
            output_format="jpeg"),
        "--canvas 1000x1000 on a picture": RemovalOptions.build(
            canvas="1000x1000", margin="6%", background_image=back, output_format="jpeg"),
        "photo-sized, on a picture": RemovalOptions.build(background_image=back,
                                                          output_format="jpeg"),
    }
    per_mp: dict[str, list[float]] = {name: [] for name in variants}
    with bgremove.new_session() as session:
        for photo in photos:
            cut = np.asarray(bgremove.remove(Image.open(photo), mode="fast", session=session))
            mp = cut.shape[0] * cut.shape[1] / 1e6
            # As the local engine holds them: the colour and the 8-bit alpha, each contiguous.
            rgb, alpha = np.ascontiguousarray(cut[:, :, :3]), np.ascontiguousarray(cut[:, :, 3])
            for name, options in variants.items():
                if options is None:
                    cost = cpu_ms(lambda a=alpha: subject_box(a))
                else:
                    cost = cpu_ms(lambda c=rgb, a=alpha, o=options: finish(c, a, o))
                per_mp[name].append(cost / mp)
    return [(name, statistics.median(values)) for name, values in per_mp.items()]


def profile_costs(photo: Path) -> tuple[list[str], float, float]:
    from PIL import Image, ImageCms

    from bgremove.imaging.compose import encode
    from bgremove.options import OutputFormat

    image = Image.open(photo).convert("RGB")
    mp = image.width * image.height / 1e6
    rows = []
    profiles = {f"colord's {name}": (PROFILES / f"{name}.icc").read_bytes()
                for name in ("ProPhotoRGB", "AdobeRGB1998")}
    # A camera's or an editor's profile is far smaller than colord's (which carry tables and
    # texts): samples/rocket.jpg's own Adobe RGB (1998).
    profiles["rocket.jpg's Adobe RGB"] = Image.open(ROOT / "samples" / "rocket.jpg").info[
        "icc_profile"]
    for name, icc in profiles.items():
        cells = [f"{name} ({len(icc):,} B)"]
        for fmt in (OutputFormat.png, OutputFormat.webp, OutputFormat.jpeg):
            bare = encode(image, fmt)
            tagged = encode(image, fmt, icc)
            cells.append(f"+{len(tagged) - len(bare):,} B")
        rows.append("| " + " | ".join(cells) + " |")
    icc = (PROFILES / "ProPhotoRGB.icc").read_bytes()
    plain = cpu_ms(lambda: encode(image, OutputFormat.png))
    tagged = cpu_ms(lambda: encode(image, OutputFormat.png, icc))
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.createProfile("sRGB")
    transform = ImageCms.buildTransform(source, srgb, "RGB", "RGB")
    convert = cpu_ms(lambda: ImageCms.applyTransform(image, transform))
    return rows, (tagged - plain) / mp, convert / mp


def whole_runs(photos: list[Path], rounds: int) -> dict[str, tuple[float, float]]:
    folder = WORK.parent / "shaping-in"
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        if not (folder / photo.name).exists():
            shutil.copyfile(photo, folder / photo.name)
    variants = {}
    for fmt in ("png", "webp", "jpeg"):
        variants[f"--format {fmt}"] = ["--format", fmt]
        variants[f"--format {fmt} --crop --canvas 1000x1000"] = ["--format", fmt, "--crop",
                                                                 "--canvas", "1000x1000"]
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, extra in variants.items():
            out = WORK.parent / "shaping-out"
            shutil.rmtree(out, ignore_errors=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([str(BGREMOVE), str(folder), "-o", str(out), "--mode", "fast", "-q",
                            *extra], check=True)
            walls[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name]))
            for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    photos = build_photos(WORK / "in")
    big = [p for p in photos if p.name.startswith("2400-")]
    stages = stage_costs(big)
    for name, cost in stages:
        print(f"{name}: {cost:.1f} ms CPU per MP", flush=True)
    profile_rows, tag_cost, convert_cost = profile_costs(big[0])
    print(*profile_rows, f"tagging {tag_cost:.2f} ms/MP, converting {convert_cost:.1f} ms/MP",
          sep="\n", flush=True)
    runs = whole_runs(photos, args.rounds)
    for name, (wall, used) in runs.items():
        print(f"{name}: {wall:.1f} s wall, {used:.1f} s CPU", flush=True)
    bars = []
    for fmt in ("png", "webp", "jpeg"):
        plain_cpu = runs[f"--format {fmt}"][1]
        shaped_cpu = runs[f"--format {fmt} --crop --canvas 1000x1000"][1]
        # 2%: what two runs of the same command differ by here
        bars.append((f"--crop --canvas 1000x1000 no slower than without, {fmt} (CPU, 2%)",
                     shaped_cpu <= plain_cpu * 1.02,
                     f"{shaped_cpu:.1f} s against {plain_cpu:.1f} s"))
    body = "\n".join([
        "## Product photos: the shaping stage and colour profiles (`benchmarks/shaping.py`)",
        "",
        f"{cpu()}, Python {sys.version.split()[0]}; other jobs shared the machine, so CPU time "
        "is the measure. Shaping works on the transparent cut-out, after the matte: its cost per "
        "megapixel of the photo (CPU ms, median over the throughput set's ten 2400-px photos, "
        "best of 3):",
        "",
        "| shaping | CPU ms per MP |",
        "|---|---|",
        *[f"| {name} | {cost:.1f} |" for name, cost in stages],
        "",
        "Colour profiles are carried, not converted: the bytes a profile adds to an output "
        "(a 2400-px photo) and what converting to sRGB would cost instead:",
        "",
        "| profile | PNG | WebP | JPEG |",
        "|---|---|---|---|",
        *profile_rows,
        "",
        f"Writing the profile costs nothing measurable ({tag_cost:+.2f} ms of CPU per MP of a "
        "PNG: the deflated profile is cached); converting the pixels to sRGB with ImageCms "
        f"would cost {convert_cost:.1f} ms per MP, and clip the colours sRGB cannot show.",
        "",
        f"Whole runs, `bgremove in/ -o out/ --mode fast` on the 30 photos (a third of them 800 "
        "px, which a 1000-px canvas enlarges), median of "
        f"{args.rounds} alternating rounds:",
        "",
        "| run | wall s | CPU s |",
        "|---|---|---|",
        *[f"| {name} | {wall:.1f} | {used:.1f} |" for name, (wall, used) in runs.items()],
        "",
        bars_text(bars),
        *([] if all(ok for _, ok, _ in bars) else [
            "",
            "Where a bar is not met: the subject is resampled to the canvas (Lanczos, "
            "premultiplied) and a third of the photos are enlarged to it, which can cost more "
            "than the encoder saves on the smaller output: bgremove's PNG writer (ISA-L deflate) "
            "takes about 17 ms of CPU per MP, libjpeg-turbo about 5 (but a JPEG's background is "
            "filled over the whole photo first), libwebp about 45."]),
    ])
    if not args.no_write:
        write_section("shaping", body)
    print(body)


if __name__ == "__main__":
    main()
