"""The model architectures bgremove runs from a file, each with the pre- and postprocessing it
was trained with, and how a file's architecture is told from its graph.

A model file is only weights: fed the wrong way it still runs, and its cut-outs are quietly poor
(issue 37: an IS-Net fed as U²-Net scored maxF 0.72 where rembg's IS-Net route scored 0.91). So
each architecture says how it is fed, matching rembg's session for it (rembg/sessions: u2net.py,
dis_*.py, birefnet_*.py, ben_custom.py), and a file whose architecture cannot be told is refused
unless the user names it (`model_type`, `--model-type`).

Every architecture is fed alike but for its numbers: the photo resized (Lanczos) to the square
the model takes, RGB in that channel order, divided by its brightest value (as rembg does: not
by 255), less a mean, over a deviation, as 1 x 3 x H x W. Its output map then becomes a matte:

- u2net (U²-Net, U²-Netp, silueta): ImageNet's mean and deviation, 320 px; the first output (the
  fused map d0), min-max scaled.
- isnet (IS-Net, DIS): mean 0.5, deviation 1, 1024 px; the first output (d1), min-max scaled.
- birefnet (BiRefNet; BRIA RMBG-2.0 is one): ImageNet's, 1024 px; the last output (BiRefNet's
  decoder lists its predictions coarse to fine; its own inference takes `[-1]`), a logit: a
  sigmoid, then min-max scaled as rembg does. The min-max makes it indifferent to whether an
  export kept the sigmoid inside the graph (a sigmoid of a probability, rescaled, is nearly the
  identity), so an RMBG-2.0 file runs right as birefnet too.
- ben (BEN, BEN2): rembg's ben_custom session feeds and reads it as IS-Net: mean 0.5, deviation
  1, 1024 px, the first output min-max scaled.

What is reliable enough to tell them apart (`recognise`), and what is not:

- The number of outputs is the architecture's own, whatever the exporter: U²-Net returns its
  fused map and six side maps (7 outputs: rembg's u2net, u2netp, silueta and u2net_human_seg
  files all have them); IS-Net its six side maps, and with them its six decoder features when
  the export keeps them (6 or 12). BiRefNet and BEN give one. So 7 is u2net; 6 or 12 is isnet.
- One output is BiRefNet or BEN (or a one-output U²-Net): these are told apart only by
  BiRefNet's own exporter's names (`input_image` in, `output_image` out), or by a fixed 320-px
  input, the size every U²-Net is trained at and none of the others.
- Not used: other names (every exporter picks its own: `input`, `input.1`, numbers), the
  opset and operators (a conversion or simplification changes them), and sizes other than 320
  (an IS-Net, a BiRefNet and a BEN are all 1024 px).
- Where the graph does not tell, one of rembg's own files (given by path rather than by name)
  is known by the checksum the registry pins for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from bgremove.errors import ModelUnavailable, Option
from bgremove.models.graph import NotOnnx, Signature, read_signature

if TYPE_CHECKING:
    import numpy as np

    from bgremove.models import ModelInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelType(str, Enum):
    """The architectures `model_type` (`--model-type`) names."""

    u2net = "u2net"
    isnet = "isnet"
    birefnet = "birefnet"
    ben = "ben"


@dataclass(frozen=True)
class Architecture:
    """How one architecture is fed and read (see the module's docstring)."""

    type: ModelType
    title: str
    side: int  # the square it was trained on: the input size where the graph leaves it open
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    last_output: bool = False  # the prediction is the last output, not the first
    logits: bool = False  # the output is a logit: a sigmoid first
    # Quality mode's extra views (imaging/multiscale.py) were tuned on U²-Net's maps only.
    multiscale: bool = False

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """The model's input from resized RGB pixels (H x W x 3, uint8): 1 x 3 x H x W float32."""
        import numpy as np

        x = np.asarray(rgb, dtype=np.float32)
        x *= 1.0 / max(float(x.max()), 1e-6)
        x -= np.asarray(self.mean, dtype=np.float32)
        x /= np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def output_index(self, count: int) -> int:
        return count - 1 if self.last_output else 0

    def to_map(self, raw: np.ndarray) -> np.ndarray:
        """The foreground map in [0, 1] (float32) from the selected output's map (H x W)."""
        import numpy as np

        pred = np.asarray(raw, dtype=np.float32)
        if self.logits:  # the sigmoid, as tanh: no overflow warning for a very negative logit
            pred = 0.5 + 0.5 * np.tanh(0.5 * pred)
        lo, hi = float(pred.min()), float(pred.max())
        return ((pred - lo) / max(hi - lo, 1e-6)).astype(np.float32, copy=False)


ARCHITECTURES: dict[ModelType, Architecture] = {
    a.type: a for a in (
        Architecture(ModelType.u2net, "U²-Net", 320, IMAGENET_MEAN, IMAGENET_STD,
                     multiscale=True),
        Architecture(ModelType.isnet, "IS-Net", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
        Architecture(ModelType.birefnet, "BiRefNet", 1024, IMAGENET_MEAN, IMAGENET_STD,
                     last_output=True, logits=True),
        Architecture(ModelType.ben, "BEN", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
    )
}
U2NET = ARCHITECTURES[ModelType.u2net]
TYPES = ", ".join(t.value for t in ModelType)


@dataclass(frozen=True)
class Recognition:
    """What the graph says: the architecture (None: it cannot be told) and why."""

    architecture: Architecture | None
    reason: str


def recognise(signature: Signature) -> Recognition:
    """The architecture a graph has, where its signature tells it reliably (module docstring)."""
    inputs, outputs = signature.inputs, signature.outputs
    if len(inputs) != 1:
        return Recognition(None, f"it takes {len(inputs)} inputs, not one image")
    shape = inputs[0].shape
    if shape is not None and (len(shape) != 4 or isinstance(shape[1], int) and shape[1] != 3):
        return Recognition(None, f"its input is {_shape_text(shape)}, not N x 3 x H x W")
    if not outputs:
        return Recognition(None, "it has no outputs")
    maps = [o for o in outputs if not _multichannel(o.shape)]
    count = len(outputs)
    if count == 7 and len(maps) == 7:
        return Recognition(U2NET, "7 single-channel outputs, U²-Net's fused and side maps")
    if count in (6, 12) and outputs[0] in maps and len(maps) >= 6:
        return Recognition(ARCHITECTURES[ModelType.isnet],
                           f"{count} outputs, IS-Net's six side maps"
                           + (" and six decoder features" if count == 12 else ""))
    if count == 1 and inputs[0].name == "input_image" and outputs[0].name == "output_image":
        return Recognition(ARCHITECTURES[ModelType.birefnet],
                           "BiRefNet's exporter's names (input_image, output_image)")
    if count == 1 and shape is not None and shape[2] == shape[3] == 320:
        return Recognition(U2NET, "one output from a fixed 320-px input, as only U²-Net takes")
    side = shape[-1] if shape else None
    at = f" at {side} px" if isinstance(side, int) else ""
    outputs_text = "1 output" + at + " fits" if count == 1 else f"{count} outputs{at} fit"
    return Recognition(None, f"{outputs_text} no architecture bgremove can tell from the graph "
                       "alone")


def _multichannel(shape: tuple | None) -> bool:
    return shape is not None and len(shape) == 4 and isinstance(shape[1], int) and shape[1] > 1


def _shape_text(shape: tuple) -> str:
    return " x ".join(str(d) if d is not None else "?" for d in shape)


def parse_type(value: ModelType | str | None) -> ModelType | None:
    """`model_type` as given (None: recognise it from the graph). Raises ModelUnavailable."""
    if value is None or isinstance(value, ModelType):
        return value
    try:
        return ModelType(value)
    except ValueError:
        raise ModelUnavailable(Option("model_type", str(value)), f" is not an architecture: "
                               f"choose {TYPES}", option="model_type") from None


def recognise_file(path: str | os.PathLike[str]) -> Recognition:
    """The recognition of the file's graph, else of its content: one of rembg's own files, given
    by path, is known by its checksum whatever its graph looks like. A file that is not ONNX at
    all is refused."""
    try:
        found = recognise(read_signature(path))
        if found.architecture is None:
            info = rembg_file(path)
            if info is not None:
                return Recognition(ARCHITECTURES[ModelType(info.architecture)],
                                   f"rembg's {info.name} file, by its checksum")
        return found
    except NotOnnx as exc:
        raise ModelUnavailable(f"model file {path}: {exc}", path=path) from None
    except OSError as exc:
        raise ModelUnavailable(f"model file {path}: {exc.strerror or exc}", path=path) from None


def rembg_file(path: str | os.PathLike[str]) -> ModelInfo | None:
    """The registry's entry whose pinned checksum the file has, if any. Only files within 10% of
    a registry model's size are hashed (a second or two for the largest), and only where the
    graph did not tell: a run hashes a model file for its stamps anyway."""
    import hashlib

    from bgremove.models import KNOWN

    size = os.path.getsize(path)
    candidates = [i for i in KNOWN.values() if abs(i.size_mb * 2**20 - size) <= 0.1 * size]
    if not candidates:
        return None
    digests = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for digest in digests.values():
                digest.update(block)
    hexes = {f"{name}:{digest.hexdigest()}" for name, digest in digests.items()}
    return next((i for i in candidates if i.checksum in hexes), None)


def for_file(path: str | os.PathLike[str], model_type: ModelType | str | None = None,
             ) -> Architecture:
    """How to run the model file at `path`: as `model_type` says, else as its graph says.
    A file whose architecture its graph does not tell, with no `model_type`, is refused
    (ModelUnavailable naming `model_type`), never run the wrong way."""
    named = parse_type(model_type)
    if named is not None:
        return ARCHITECTURES[named]
    found = recognise_file(path)
    if found.architecture is None:
        raise ModelUnavailable(
            f"cannot tell the architecture of {Path(path).name} from its graph ({found.reason}); "
            "name it with ", Option("model_type"), " (u2net, isnet, birefnet or ben)",
            option="model_type", path=path)
    return found.architecture


def of_model(name: str, path: str | os.PathLike[str] | None,
             model_type: ModelType | str | None = None) -> Architecture:
    """The architecture of a model as `models.resolve` names it: one of rembg's by the registry
    (a `model_type` that contradicts it is refused), any other file as `for_file` says."""
    from bgremove.models import KNOWN

    info = KNOWN.get(name)
    if info is None:
        if path is None:
            raise ModelUnavailable(f"unknown model {name!r}")
        return for_file(path, model_type)
    known = ARCHITECTURES[ModelType(info.architecture)]
    named = parse_type(model_type)
    if named is not None and named is not known.type:
        raise ModelUnavailable(
            f"{name} is {known.title} ({known.type.value}), not ", Option("model_type",
                                                                         named.value),
            ": that setting is for model files of your own (or leave it out)",
            option="model_type")
    return known
