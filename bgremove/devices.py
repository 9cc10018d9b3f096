"""`--device`: which onnxruntime execution providers a session asks for, and whether it got them.

onnxruntime lists a provider as available whenever its shim is installed, even when the driver or
the CUDA/cuDNN libraries it needs are missing; the session then quietly runs on the CPU. So the
providers a session asked for are compared with the ones it actually got (`get_providers()`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bgremove.errors import Option, UsageError, Words

CPU = "CPUExecutionProvider"

DEVICES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
# What `auto` tries, best first. TensorRT (minutes of engine building on first use), CoreML and
# OpenVINO (results and speed vary by model) are used only when asked for by name.
AUTO = ("cuda", "rocm", "directml")
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` folder: whichever pip wrote
# last wins, and pip cannot drop bgremove's onnxruntime for an extra. So the GPU build goes in
# over the CPU one, in one command (docs/models-and-devices.md, "Devices").
GPU_BUILD = "pip install --force-reinstall --no-deps onnxruntime-gpu"
INSTALL_HINT = {
    "cuda": f"For NVIDIA GPUs put the GPU build of onnxruntime in place: {GPU_BUILD}",
    "tensorrt": f"TensorRT needs the GPU build ({GPU_BUILD}) and NVIDIA's TensorRT.",
}


def _both_builds() -> bool:
    """Both onnxruntime distributions are installed: their files are mixed in one folder."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("onnxruntime")
        version("onnxruntime-gpu")
    except PackageNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Placement:
    """Where a session should run: what `--device` said, and the providers that follow from it."""

    asked: str
    providers: list  # onnxruntime's `providers` argument: names or (name, options) pairs
    accelerator: str | None = None  # the non-CPU provider wanted, if any
    missing: bool = False  # that provider is not in this onnxruntime build


def installed() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider") or provider


def choices() -> str:
    return "auto, " + ", ".join(DEVICES) + " (add :N for a device id, e.g. cuda:1)"


def place(device: str = "auto") -> Placement:
    """Turn `--device` into providers. An accelerator that is not installed falls back to the CPU
    (with `missing` set, so the caller can say so); an unknown name is a usage error."""
    have = installed()
    asked = device.strip()
    name, _, index = asked.partition(":")
    key = name.lower()
    if key == "auto" and not index:
        best = next((DEVICES[d] for d in AUTO if DEVICES[d] in have), None)
        return Placement(asked, [best, CPU] if best else [CPU], best)
    by_provider = {p.lower(): p for p in (*DEVICES.values(), *have)}
    provider = DEVICES.get(key) or by_provider.get(key)
    if provider is None or (index and not index.isdigit()):
        raise UsageError(f"unknown device {asked!r}: choose {choices()}. This onnxruntime has: "
                         f"{', '.join(have)}.")
    if provider == CPU:
        return Placement(asked, [CPU])
    if provider not in have:
        return Placement(asked, [CPU], provider, missing=True)
    first = (provider, {"device_id": int(index)}) if index else provider
    return Placement(asked, [first, CPU], provider)


def warning(placement: Placement, active: list[str]) -> Words | None:
    """What to tell the user when an accelerator was wanted but the session runs without it."""
    wanted = placement.accelerator
    if wanted is None or wanted in active:
        return None
    name = short(wanted)
    if placement.missing:
        hint = INSTALL_HINT.get(next((k for k, v in DEVICES.items() if v == wanted), ""), "")
        if wanted == DEVICES["cuda"] and _both_builds():
            hint = ("onnxruntime and onnxruntime-gpu are both installed and the CPU build's "
                    f"files won (they share one folder); put the GPU build back: {GPU_BUILD}")
        return Words(Option("device", placement.asked), f": this onnxruntime has no {wanted} (it "
                     f"has {', '.join(installed())}); running on the CPU. {hint}".rstrip())
    return Words(Option("device", placement.asked), f": {name} is installed but could not start "
                 "(usually a missing driver or CUDA/cuDNN libraries of another version; "
                 "onnxruntime's log above names the one that failed); running on the CPU, which "
                 "is much slower.")
