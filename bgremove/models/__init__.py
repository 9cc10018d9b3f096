"""Which models bgremove can use, and where their files are.

The bundled U^2-Netp ships inside this package, so the default works offline. Every other name is
one of rembg's models, used when its file is in rembg's model cache (`$U2NET_HOME`, else
`~/.u2net`). Nothing here imports onnxruntime or rembg: listing models must stay instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bgremove.errors import ModelUnavailable

BUNDLED = "u2netp"
BUNDLED_PATH = Path(__file__).with_name("u2netp.onnx")
RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    filename: str
    input_size: int
    size_mb: float
    licence: str = "Apache-2.0"
    note: str = ""

    @property
    def url(self) -> str:
        return f"{RELEASES}/{self.filename}"


# rembg's general-purpose models and their input resolution.
KNOWN: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("u2netp", "u2netp.onnx", 320, 4.4, note="bundled; fast, small"),
        ModelInfo("u2net", "u2net.onnx", 320, 168, note="general purpose"),
        ModelInfo("u2net_human_seg", "u2net_human_seg.onnx", 320, 168, note="people"),
        ModelInfo("silueta", "silueta.onnx", 320, 43, note="u2net, pruned"),
        ModelInfo("isnet-general-use", "isnet-general-use.onnx", 1024, 170, note="general"),
        ModelInfo("isnet-anime", "isnet-anime.onnx", 1024, 168, note="anime characters"),
        ModelInfo("birefnet-general", "BiRefNet-general-epoch_244.onnx", 1024, 928, "MIT"),
        ModelInfo("birefnet-general-lite", "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
                  1024, 214, "MIT"),
        ModelInfo("birefnet-portrait", "BiRefNet-portrait-epoch_150.onnx", 1024, 928, "MIT"),
        ModelInfo("bria-rmbg", "bria-rmbg-2.0.onnx", 1024, 977,
                  "CC BY-NC 4.0: not for commercial use without a licence from BRIA AI"),
    )
}


def cache_dir() -> Path:
    """rembg's model cache, where downloaded models live."""
    return Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()


def cached_path(name: str) -> Path:
    return cache_dir() / KNOWN[name].filename


def resolve(model: str | None) -> tuple[str, Path]:
    """Map `--model` (a name, a path to an .onnx file, or None) to (name, file) or say what's wrong."""
    if model is None or model == BUNDLED:
        return BUNDLED, BUNDLED_PATH
    if model.endswith(".onnx") or os.sep in model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"model file not found: {path}")
        return "custom", path
    if model not in KNOWN:
        names = ", ".join(KNOWN)
        raise ModelUnavailable(f"unknown model {model!r}. Available: {names}, or a path to an .onnx file")
    path = cached_path(model)
    if not path.is_file():
        raise ModelUnavailable(
            f"model {model!r} is not downloaded (looked for {path}). Download it with "
            f"`bgremove models pull {model}` on a machine that can reach {KNOWN[model].url}, "
            f"or copy the file there. The bundled model ({BUNDLED}) works offline."
        )
    return model, path
