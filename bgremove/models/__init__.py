"""Which models bgremove can use, and where their files are.

The bundled U^2-Netp ships inside this package, so the default works offline. Every other name is
one of rembg's models, used once its file is downloaded (`bgremove models pull NAME`), or a custom
model pulled from a mirror. Nothing here imports onnxruntime or rembg: listing models must stay
instant.

Facts (release asset, checksum, input size) are rembg 2.0.86's, from `rembg/sessions/*.py`. Files
are cached as `<name>.onnx` in `$U2NET_HOME` (default `$XDG_DATA_HOME/.u2net`, else `~/.u2net`,
as rembg reads them): the flat layout rembg reads too,
so a file pulled here is one rembg never downloads again, and vice versa.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from bgremove.errors import ModelUnavailable

BUNDLED = "u2netp"
BUNDLED_PATH = Path(__file__).with_name("u2netp.onnx")
RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"
MIRROR_ENV = "BGREMOVE_MODEL_MIRROR"
# The architectures a model file can have (`model_type`; models/architectures.py runs them),
# here for the settings, which `bgremove --help` imports: importing architectures.py there
# cost it 4.5 ms (of ~16 ms for bgremove.cli.settings).
MODEL_TYPES = ("u2net", "isnet", "birefnet", "ben")
# A custom model's name becomes its file name: keep it to characters that are safe in both.
CUSTOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    asset: str  # the file's name on rembg's release page (and on a mirror)
    input_size: int
    size_mb: float  # approximate download size, MiB
    checksum: str  # "md5:HEX" or "sha256:HEX", as rembg pins it
    licence: str = "Apache-2.0"
    restriction: str = ""  # set when the licence restricts use
    note: str = ""
    # how it is fed and read (models/architectures.py); rembg's session for it does the same
    architecture: str = "u2net"

    @property
    def filename(self) -> str:
        """The cached file's name: rembg looks for `<name>.onnx`, whatever the asset is called."""
        return f"{self.name}.onnx"


_NC = "not for commercial use without a licence from BRIA AI"

# rembg's background-removal models. (u2net_cloth_seg and sam are left out: they segment
# clothes or follow prompts, not subjects.)
KNOWN: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("u2netp", "u2netp.onnx", 320, 4.4,
                  # The bundled file, which is never pulled: rembg's u2netp.onnx (which rembg
                  # pins as md5:8e83ca70e441ab06c318d82300c84806) with its dimensions relabelled
                  # as symbolic by scripts/relabel_model.py; same weights, same outputs.
                  "sha256:434c037a2fd3f5ad12c5098f4d2613b02d521a56648c853ad325d82f0c3b663c",
                  note="bundled; small and fast"),
        ModelInfo("u2net", "u2net.onnx", 320, 168, "md5:60024c5c889badc19c04ad937298a77b",
                  note="general purpose"),
        ModelInfo("u2net_human_seg", "u2net_human_seg.onnx", 320, 168,
                  "md5:c09ddc2e0104f800e3e1bb4652583d1f", note="people"),
        ModelInfo("silueta", "silueta.onnx", 320, 43, "md5:55e59e0d8062d2f5d013f4725ee84782",
                  note="u2net, pruned"),
        ModelInfo("isnet-general-use", "isnet-general-use.onnx", 1024, 170,
                  "md5:fc16ebd8b0c10d971d3513d564d01e29", note="general; fine edges",
                  architecture="isnet"),
        ModelInfo("isnet-anime", "isnet-anime.onnx", 1024, 168,
                  "md5:6f184e756bb3bd901c8849220a83e38e", note="anime characters",
                  architecture="isnet"),
        ModelInfo("birefnet-general", "BiRefNet-general-epoch_244.onnx", 1024, 928,
                  "md5:7a35a0141cbbc80de11d9c9a28f52697", "MIT", note="general; high quality",
                  architecture="birefnet"),
        ModelInfo("birefnet-general-lite", "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
                  1024, 214, "md5:4fab47adc4ff364be1713e97b7e66334", "MIT",
                  note="general; lighter", architecture="birefnet"),
        ModelInfo("birefnet-portrait", "BiRefNet-portrait-epoch_150.onnx", 1024, 928,
                  "md5:c3a64a6abf20250d090cd055f12a3b67", "MIT", note="portraits, hair",
                  architecture="birefnet"),
        ModelInfo("birefnet-dis", "BiRefNet-DIS-epoch_590.onnx", 1024, 928,
                  "md5:2d4d44102b446f33a4ebb2e56c051f2b", "MIT", note="fine structures (DIS)",
                  architecture="birefnet"),
        ModelInfo("birefnet-hrsod", "BiRefNet-HRSOD_DHU-epoch_115.onnx", 1024, 928,
                  "md5:c017ade5de8a50ff0fd74d790d268dda", "MIT",
                  note="high-resolution salient objects", architecture="birefnet"),
        ModelInfo("birefnet-cod", "BiRefNet-COD-epoch_125.onnx", 1024, 928,
                  "md5:f6d0d21ca89d287f17e7afe9f5fd3b45", "MIT", note="concealed objects",
                  architecture="birefnet"),
        ModelInfo("birefnet-massive", "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx", 1024, 928,
                  "md5:33e726a2136a3d59eb0fdf613e31e3e9", "MIT",
                  note="trained on a massive dataset", architecture="birefnet"),
        ModelInfo("bria-rmbg", "bria-rmbg-2.0.onnx", 1024, 977,
                  "sha256:5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958",
                  "CC BY-NC 4.0", _NC, note="BRIA RMBG-2.0", architecture="birefnet"),
    )
}

# What `--mode quality` may suggest when one of these is downloaded (best first; bria-rmbg is left
# out on purpose: its licence forbids commercial use).
QUALITY_UPGRADES = ("birefnet-general", "birefnet-general-lite", "isnet-general-use")


def cache_dir() -> Path:
    """The model cache, rembg's legacy one, read as rembg reads it (`legacy_home` in its
    sessions/base.py): `$U2NET_HOME`, else `$XDG_DATA_HOME/.u2net`, else `~/.u2net`."""
    default = os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(os.path.expanduser(os.environ.get("U2NET_HOME", default)))


def rembg_home() -> Path:
    """Where rembg >= 2.0.7x puts its own downloads, as `models/<name>/<name>.onnx`."""
    if os.environ.get("U2NET_HOME"):
        return cache_dir()
    xdg = os.environ.get("XDG_DATA_HOME")
    default = Path(xdg) / "rembg" if xdg else Path.home() / ".rembg"
    return Path(os.environ.get("REMBG_HOME", default)).expanduser()


def mirror(override: str | None = None) -> str:
    """The base URL models come from: `--mirror`, else $BGREMOVE_MODEL_MIRROR, else rembg's."""
    return (override or os.environ.get(MIRROR_ENV) or RELEASES).rstrip("/")


def asset_url(asset: str, base: str | None = None) -> str:
    return f"{mirror(base)}/{asset}"


def cached_path(name: str) -> Path:
    """Where `models pull` puts a model."""
    return cache_dir() / (KNOWN[name].filename if name in KNOWN else f"{name}.onnx")


def find_downloaded(name: str) -> Path | None:
    """The downloaded file of a known or custom model, or None. A `.part` file never counts."""
    candidates = [cached_path(name)]
    if name in KNOWN:
        candidates.append(rembg_home() / "models" / name / f"{name}.onnx")
    return next((p for p in candidates if p.is_file()), None)


def custom_models() -> dict[str, Path]:
    """Models in the cache that are not rembg's: pulled from a mirror with their own checksum."""
    try:
        files = sorted(cache_dir().glob("*.onnx"))
    except OSError:
        return {}
    return {p.stem: p for p in files if p.stem not in KNOWN and p.is_file()}


def is_custom_name(name: str) -> bool:
    return name not in KNOWN and bool(CUSTOM_NAME.fullmatch(name)) and not name.endswith(".onnx")


def available_text() -> str:
    """What `--model` accepts here, for error messages."""
    ready = [f"{BUNDLED} (bundled)"]
    ready += [f"{n} (downloaded)" for n in KNOWN if n != BUNDLED and find_downloaded(n)]
    ready += [f"{n} (custom)" for n in custom_models()]
    pullable = [n for n in KNOWN if n != BUNDLED and not find_downloaded(n)]
    text = "Ready to use: " + ", ".join(ready) + "."
    if pullable:
        text += " Downloadable with `bgremove models pull NAME`: " + ", ".join(pullable) + "."
    return text + " Or give a path to an .onnx file. See `bgremove models list`."


def resolve(model: str | None) -> tuple[str, Path]:
    """Map `--model` (a name, a path to an .onnx file, or None) to (name, file) or say what's wrong.

    The name is "custom" for a file given by path; a custom model pulled from a mirror keeps its
    name. Either kind runs as its architecture (models/architectures.py) says.
    """
    if model is None or model == BUNDLED:
        return BUNDLED, BUNDLED_PATH
    if model.endswith(".onnx") or os.sep in model or "/" in model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"model file not found: {path}. {available_text()}")
        return "custom", path
    found = find_downloaded(model) if (model in KNOWN or is_custom_name(model)) else None
    if found is not None:
        return model, found
    if model not in KNOWN:
        raise ModelUnavailable(f"unknown model {model!r}. {available_text()}")
    raise ModelUnavailable(
        f"model {model!r} is not downloaded (looked for {cached_path(model)}). Download it with "
        f"`bgremove models pull {model}` on a machine that can reach "
        f"{asset_url(KNOWN[model].asset)}, or copy the file there. The bundled model ({BUNDLED}) "
        f"works offline."
    )


def suggest_upgrade() -> str | None:
    """A downloaded model that does better than the bundled one in quality mode, if any."""
    return next((n for n in QUALITY_UPGRADES if find_downloaded(n)), None)
