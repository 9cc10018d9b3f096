"""Which numeric precision the bundled model runs in: fp32, or int8 where this CPU makes it pay.

The int8 model is a build artefact of the bundled fp32 file (scripts/quantize_model.py): the
same network with nearly all of it quantised, shipped next to u2netp.onnx. On a CPU with 8-bit
dot-product instructions (VNNI or AMX) it was measured twice as fast (BENCHMARKS.md "precision");
elsewhere it runs on onnxruntime's generic kernels, and nobody measured it faster. `auto` could
pick it only for the bundled model, on the CPU, where those instructions are, and for now does
not pick it at all (AUTO_PICKS_INT8). Nothing here imports onnxruntime: the CLI resolves a
precision before loading.
"""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from bgremove.errors import ModelUnavailable, Option
from bgremove.models import BUNDLED, BUNDLED_PATH

if TYPE_CHECKING:
    from bgremove.devices import Placement

INT8_PATH = BUNDLED_PATH.with_name("u2netp-int8.onnx")
# 8-bit dot products in one instruction (Cascade Lake's AVX-512 VNNI, Alder Lake's AVX-VNNI,
# Sapphire Rapids' AMX): what onnxruntime's fast int8 kernels use.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Whether `auto` may pick int8 on such a CPU. Off for now: the int8 build meets issue 22's bars on
# sod-dev as a whole and on GT01, but not fold by fold, it fills a fine mesh's holes more than fp32
# (tests/test_matting.py: fast 0.29 -> 0.32, quality 0.29 -> 0.35), and it takes fast mode's maxF
# below rembg's 0.837 (0.835). `--precision int8` asks for it by name.
AUTO_PICKS_INT8 = False


class Precision(str, Enum):
    fp32 = "fp32"
    int8 = "int8"
    auto = "auto"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags /proc/cpuinfo lists for this CPU (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def choose(precision: Precision | str, model: str | None = None, *, on_cpu: bool = True,
           flags: frozenset[str] | None = None, auto_int8: bool = AUTO_PICKS_INT8) -> Precision:
    """fp32 or int8: what `precision` means for `model` (None: the bundled one) run on the CPU
    (`on_cpu`) or an accelerator, on a CPU with `flags` (default: this one's), when `auto` may
    pick int8 at all (`auto_int8`). Raises ValueError for a precision that is not one, and
    ModelUnavailable for int8 asked of a model that has no int8 build."""
    try:
        wanted = Precision(precision)
    except ValueError:
        raise ValueError(f"precision {precision!r}: choose fp32, int8 or auto") from None
    bundled = model in (None, BUNDLED)
    if wanted is Precision.int8 and not bundled:
        raise ModelUnavailable(Option("precision", "int8"), f" is for the bundled {BUNDLED} "
                               f"only; {model!r} runs in fp32 (use ",
                               Option("precision", "fp32"), " or auto)", option="precision")
    if wanted is Precision.int8 and not INT8_PATH.is_file():
        raise ModelUnavailable(f"no int8 model in this installation ({INT8_PATH.name}): build it "
                               "with scripts/quantize_model.py, or use ",
                               Option("precision", "fp32"), option="precision")
    if wanted is not Precision.auto:
        return wanted
    if not auto_int8 or not bundled or not on_cpu or not INT8_PATH.is_file():
        return Precision.fp32
    found = cpu_flags() if flags is None else flags
    return Precision.int8 if found & INT8_FLAGS else Precision.fp32


def for_placement(model: str | None, precision: Precision | str,
                  placement: Placement) -> tuple[Precision, str | None]:
    """The precision a session placed on `placement` runs `model` in, and the model it loads
    then: the int8 build's path, or `model` itself."""
    on_cpu = placement.accelerator is None or placement.missing
    chosen = choose(precision, model, on_cpu=on_cpu)
    return chosen, str(INT8_PATH) if chosen is Precision.int8 else model


def model_file(model: str | None, precision: Precision | str, device: str = "auto") -> str | None:
    """What a local session on `device` loads for `model` at `precision`. Stamps name the model
    by it, so an int8 output is never taken for an fp32 one."""
    if choose(precision, model) is Precision.fp32:
        return model  # fp32 even on the CPU: no need to ask onnxruntime where `device` is
    from bgremove.devices import place

    return for_placement(model, precision, place(device))[1]
