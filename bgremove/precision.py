"""Which numeric precision the bundled model runs in: fp32, or int8 where this CPU makes it pay.

The int8 model is a build artefact of the bundled fp32 file (scripts/quantize_model.py): the
same network with nearly all of it quantised, shipped next to u2netp.onnx. On a CPU with 8-bit
dot-product instructions (VNNI or AMX) it was measured twice as fast (BENCHMARKS.md "precision");
elsewhere it runs on onnxruntime's generic kernels, and nobody measured it faster. So `auto` picks
it for the bundled model, on the CPU, where those instructions are, and fp32 everywhere else.
`choose` is the one place `auto` is resolved: the library's sessions, `remove`, `--watch`,
`serve` and each cluster worker (for its own CPU) all reach it through `for_placement`, and the
stamps through `model_file`. A session that loads the int8 build checks it first
(precision_guard.py). Nothing here imports onnxruntime: the CLI resolves a precision before
loading.
"""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from bgremove.errors import ModelUnavailable, Option, Words
from bgremove.models import BUNDLED, BUNDLED_PATH

if TYPE_CHECKING:
    from bgremove.devices import Placement

INT8_PATH = BUNDLED_PATH.with_name("u2netp-int8.onnx")
# 8-bit dot products in one instruction (Cascade Lake's AVX-512 VNNI, Alder Lake's AVX-VNNI,
# Sapphire Rapids' AMX): what onnxruntime's fast int8 kernels use.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Whether `auto` may pick int8 on such a CPU (issue 34): on held-out photos int8 is within 0.003
# maxF and 0.002 MAE of fp32 in every mode, for about twice the images per second.
AUTO_PICKS_INT8 = True
# ARM's int8 dot products (asimddp, i8mm): onnxruntime has kernels for them, but nobody measured
# the int8 build faster there, so `auto` keeps fp32 and says why.
UNMEASURED_FLAGS = frozenset({"asimddp", "i8mm"})


class Precision(str, Enum):
    fp32 = "fp32"
    int8 = "int8"
    auto = "auto"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags /proc/cpuinfo lists for this CPU (x86's `flags`, ARM's
    `Features`; empty where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
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


def reason(model: str | None = None, *, on_cpu: bool = True,
           flags: frozenset[str] | None = None, auto_int8: bool = AUTO_PICKS_INT8) -> str:
    """Why `auto` picks what it picks for `model` here, in a sentence (`bgremove models list`)."""
    chosen = choose(Precision.auto, model, on_cpu=on_cpu, flags=flags, auto_int8=auto_int8)
    found = cpu_flags() if flags is None else flags
    if chosen is Precision.int8:
        return (f"int8: this CPU has {', '.join(sorted(found & INT8_FLAGS))}, with which the "
                "int8 build ran twice as fast (checked against fp32 when it loads)")
    if model not in (None, BUNDLED):
        return f"fp32: {model} has no int8 build"
    if not on_cpu:
        return "fp32: the model runs on an accelerator, where int8 was not measured faster"
    if not INT8_PATH.is_file():
        return f"fp32: this installation has no int8 build ({INT8_PATH.name})"
    if not auto_int8:
        return "fp32: auto does not pick int8 in this version"
    if not found:
        return ("fp32: this CPU's instruction sets cannot be read (no /proc/cpuinfo), and int8 "
                "was measured faster only with AVX-512 VNNI, AVX-VNNI or AMX")
    if found & UNMEASURED_FLAGS:
        dots = ", ".join(sorted(found & UNMEASURED_FLAGS))
        return Words(f"fp32: this CPU has int8 dot products ({dots}), on which the int8 build "
                     "was never measured; ", Option("precision", "int8"), " runs it")
    return ("fp32: this CPU has no AVX-512 VNNI, AVX-VNNI or AMX, without which int8 was not "
            "measured faster")


def interchangeable(model: str | None, precision: Precision | str) -> tuple[str | None, ...]:
    """The model files whose outputs count as up to date for a run of `model` at `precision`
    (README "Usage", outputs that are up to date): under `auto`, the bundled model's two builds
    stand for each other, so an upgrade that makes `auto` pick int8 (or a machine where it picks
    fp32) redoes nothing; a precision asked for by name wants outputs of that build only."""
    if Precision(precision) is not Precision.auto or model not in (None, BUNDLED):
        return ()
    return (None, str(INT8_PATH)) if INT8_PATH.is_file() else (None,)


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


def stamp_models(model: str | None, precision: Precision | str, device: str = "auto",
                 model_type: str | None = None) -> tuple[str, tuple[str, ...]]:
    """What the stamps of a local run name before its session loads (a dry run, `--check`): the
    model it would load (as `model_type`, for a file of your own), and the others whose outputs
    count as up to date (interchangeable)."""
    from bgremove.stamps import local_model_id

    chosen = model_file(model, precision, device)
    return local_model_id(chosen, model_type), tuple(local_model_id(m) for m in
                                         interchangeable(model, precision) if m != chosen)

