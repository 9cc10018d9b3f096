"""The local session: ONNX inference on this machine, with the bundled model by default."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from bgremove.backends import Result, SessionBase
from bgremove.backends.batching import Batcher, Run
from bgremove.devices import CPU, place, warning
from bgremove.errors import ModelUnavailable, Option, Words
from bgremove.extras import needs_extra
from bgremove.imaging.compose import compose, encode
from bgremove.imaging.decode import MAX_PIXELS, Decoded, decode, from_pil
from bgremove.imaging.matte import cutout_alpha
from bgremove.models import BUNDLED, KNOWN, resolve
from bgremove.models.architectures import U2NET, Architecture, ModelType, of_model
from bgremove.options import RemovalOptions
from bgremove.parallel import usable_cores
from bgremove.precision import Precision, for_placement, interchangeable


def session_options(threads: int | None):
    """One image's inference on `threads` threads (default: all usable cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or usable_cores()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The memory pattern pre-plans one block per run, and every image in flight holds its own:
    # without it, peak memory with two images in flight is ~170 MB lower, at the same speed.
    opts.enable_mem_pattern = False
    # Errors only from onnxruntime's logger, for this session alone: its warnings (nodes left on
    # the CPU by an accelerator's provider, unused initialisers) are not for our users, and the
    # session says itself what matters (LocalSession.device_warning).
    opts.log_severity_level = 3
    return opts


class OnnxSaliency:
    """A model file run directly with onnxruntime, fed and read as its `architecture` says
    (models/architectures.py; default U²-Net, as the bundled model is).

    Only the output the architecture reads is fetched: asking onnxruntime for one output instead
    of all seven of U²-Net's lets it skip the side branches' upsampling, about a third of the
    model's time.
    """

    def __init__(self, path: Path, threads: int | None = None, providers: list | None = None,
                 architecture: Architecture = U2NET):
        import onnxruntime as ort

        self.architecture = architecture
        self.session = ort.InferenceSession(
            str(path), sess_options=session_options(threads),
            providers=providers or ["CPUExecutionProvider"],
        )
        self.providers = self.session.get_providers()  # what actually runs, best first
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        outputs = self.session.get_outputs()
        self.output_name = outputs[architecture.output_index(len(outputs))].name
        shape = list(model_input.shape or [])
        height, width = shape[-2:] if len(shape) == 4 else (None, None)
        # The graph's own size where it fixes one, else the square the architecture was
        # trained on.
        self.size: tuple[int, int] = (
            (width, height) if isinstance(height, int) and isinstance(width, int)
            else (architecture.side, architecture.side))
        self.side = self.size[0]
        # A graph whose height and width are symbolic (the bundled one: scripts/relabel_model.py)
        # runs at any size, which quality mode's second, finer view needs.
        self.any_size = architecture.multiscale and all(
            isinstance(d, str) for d in (height, width))
        self.batches = bool(shape) and isinstance(shape[0], str)  # takes N inputs in one run
        # What runs a batch of inputs: the model itself, or a Batcher in front of it that joins
        # the inputs of several threads (LocalSession, on an accelerator).
        self.run: Run = self.infer

    def prepare(self, rgb: np.ndarray | Image.Image,
                size: tuple[int, int] | None = None) -> np.ndarray:
        """The model's input for one photo (RGB pixels, or an RGB Pillow image): a 1 x 3 x H x
        W batch at `size` (width, height), by default the size the model takes."""
        # Lanczos, as rembg shrinks the photo: the model's maps are measurably better
        # for it (sod-dev maxF 0.837 against 0.830 with bilinear, BENCHMARKS.md). reducing_gap
        # box-shrinks very large photos first, which keeps the cost near a bilinear resize. (A
        # gap of 2.0 saves 40% of this step but cost 0.0018 maxF on sod-dev scaled up 4x.)
        image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
        small = image.resize(
            size or self.size, Image.Resampling.LANCZOS, reducing_gap=3.0
        )
        return self.architecture.normalise(np.asarray(small))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model's maps (its chosen output, as it comes: U²-Net's are sigmoid outputs, not
        rescaled) for an N x 3 x H x W batch of prepared inputs: N x H x W."""
        (out,) = self.session.run([self.output_name], {self.input_name: batch})
        return out[:, 0]

    def predict_raw(self, rgb: np.ndarray | Image.Image,
                    size: tuple[int, int] | None = None) -> np.ndarray:
        """The model's map for one photo at `size` (width, height), not rescaled."""
        return self.run(self.prepare(rgb, size))[0]

    def predict(self, rgb: np.ndarray | Image.Image) -> np.ndarray:
        return self.architecture.to_map(self.predict_raw(rgb))


def rembg_sessions():
    """rembg's `sessions` package, without running rembg's `__init__` until something else asks.

    rembg's `__init__` imports its `bg` module, and with it pymatting, whose numba functions are
    compiled as they are imported: ~37 s of CPU on the first run after an install (~1 s on later
    runs, from numba's cache) for matting code bgremove never calls. So the package is registered
    uninitialised, its `sessions` imported into it, and its `__init__` run the first time anyone
    reads one of its names (`rembg.remove`, `from rembg import new_session`): a program that uses
    rembg itself, besides bgremove, finds the package whole.
    """
    import importlib.util
    import sys
    import threading

    if "rembg" not in sys.modules:
        spec = importlib.util.find_spec("rembg")
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError("No module named 'rembg'", name="rembg")
        package = importlib.util.module_from_spec(spec)
        loader = spec.loader
        once = threading.Lock()

        def complete(name: str):
            with once:
                if "__getattr__" in vars(package):
                    del package.__getattr__
                    loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = complete  # type: ignore[method-assign]
        sys.modules["rembg"] = package
    return importlib.import_module("rembg.sessions")


class RembgSaliency:
    """Any other rembg model, through rembg's own session (it knows each model's pre-processing)."""

    def __init__(self, name: str, path: Path, threads: int | None = None,
                 providers: list | None = None):
        with needs_extra("models", ("rembg",), f"model {name!r} (it runs through rembg)",
                         note=" (the bundled u2netp needs nothing more)", error=ModelUnavailable):
            sessions_class = rembg_sessions().sessions_class

        # rembg's session class for the model, told where its file is: it never downloads, and
        # no process-wide setting ($U2NET_HOME) changes under other threads to point it there.
        kind = next(sc for sc in sessions_class if sc.name() == name)
        pinned = type(kind.__name__, (kind,),
                      {"download_models": classmethod(lambda cls, *a, **k: str(path))})
        self.session = pinned(name, session_options(threads),
                              providers=providers or ["CPUExecutionProvider"])
        self.providers = self.session.inner_session.get_providers()

    def predict(self, rgb: np.ndarray | Image.Image) -> np.ndarray:
        masks = self.session.predict(rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb))
        return np.asarray(masks[0].convert("L"), dtype=np.float32) * (1.0 / 255.0)


def load_segmenter(model: str | None, threads: int | None = None,
                   providers: list | None = None,
                   model_type: ModelType | str | None = None) -> OnnxSaliency | RembgSaliency:
    """rembg's models through rembg's sessions; the bundled model, and files of your own (by
    path, or pulled from a mirror under a name), as their architecture says: `model_type`, else
    their graph (models/architectures.py)."""
    name, path = resolve(model)
    architecture = of_model(name, path, model_type)
    if name in KNOWN and name != BUNDLED:
        return RembgSaliency(name, path, threads, providers)
    return OnnxSaliency(path, threads, providers, architecture)


def _model_id(model: str | None) -> str:
    from bgremove.stamps import local_model_id

    return local_model_id(model)


def _checked_int8(path: str | None, threads: int, providers: list
                  ) -> tuple[OnnxSaliency | RembgSaliency | None, str | None]:
    """The int8 build loaded and checked (precision_guard.py), or why it is not to be used."""
    from bgremove.precision_guard import failure

    try:
        segmenter = load_segmenter(path, threads, providers)
    except Exception as exc:  # noqa: BLE001 - an int8 build that cannot load: fp32 can
        return None, f"it failed to load ({type(exc).__name__}: {exc})"
    refused = failure(segmenter) if isinstance(segmenter, OnnxSaliency) else None
    return (None, refused) if refused else (segmenter, None)


def _joined(*said: Words | str | None) -> Words | None:
    parts = [w for w in said if w]
    if not parts:
        return None
    return Words(*[p for w in parts for p in (*getattr(w, "parts", (w,)), " ")][:-1])


class LocalSession(SessionBase):
    """The model on this machine, loaded once and shared by every thread that uses the session.

    `model`: a name (`bgremove models list`) or an .onnx path; None is the bundled u2netp.
    `device`: where it runs (`auto`, `cpu`, `cuda`, `cuda:1`, ...). `threads`: onnxruntime threads
    per image (default: every usable core, right for one image at a time; a batch of N images in
    flight wants cores / N). `max_pixels`: larger images are refused from their header, unless
    `max_size` in the options shrinks them. `batch`: run the images in flight through the model
    together (backends/batching.py; default: on an accelerator, with a model that takes batches).
    `precision`: `fp32`, `int8` (the bundled model's quantised build) or `auto` (int8 where this
    CPU has the instructions that make it faster: bgremove/precision.py). `model_type`: how a
    model file of your own is fed and read, `u2net`, `isnet`, `birefnet` or `ben` (default:
    recognised from its graph; a file whose graph does not tell is refused).
    """

    kind = "local"

    def __init__(self, model: str | None = None, *, device: str = "auto",
                 threads: int | None = None, max_pixels: int = MAX_PIXELS,
                 batch: bool | None = None, precision: Precision | str = Precision.auto,
                 model_type: ModelType | str | None = None):
        placement = place(device)
        # Checked against the model asked for, before the int8 build may stand in for it.
        self.architecture = of_model(*resolve(model), model_type)
        asked = model
        # the int8 build is a U^2-Net file like any custom one; stamps hash its bytes
        self.precision, model = for_placement(model, precision, placement)
        self.threads = threads or usable_cores()
        segmenter, refused = None, None
        if self.precision is Precision.int8:
            segmenter, refused = _checked_int8(model, self.threads, placement.providers)
            if segmenter is None:  # fp32 instead, and one warning
                self.precision, model = Precision.fp32, asked
        if segmenter is None:
            # No warnings filter here: filters are process-wide (the host program's too) and a
            # `catch_warnings` block is not thread-safe while sessions are built on worker
            # threads. onnxruntime's own warnings go through its logger, quieted per session
            # (session_options); the providers asked for are installed ones (devices.place), so
            # its Python warning about missing ones does not arise.
            segmenter = load_segmenter(model, self.threads, placement.providers,
                                       self.architecture.type)
        self.segmenter = segmenter
        self.model_name, self.model_path = resolve(model)
        if self.precision is Precision.int8:
            self.model_name = f"{BUNDLED}-int8"
        self.providers: list[str] = self.segmenter.providers
        # set when an accelerator was asked for but the model runs on the CPU, or when the int8
        # build failed its check
        self.device_warning = _joined(warning(placement, self.providers), refused and Words(
            "the int8 build of the model is not used: ", refused, "; running fp32, about half as "
            "fast (", Option("precision", "fp32"), " skips the check)"))
        # outputs stamped by these models count as this session's (precision.interchangeable)
        self.interchangeable = tuple(
            _model_id(m) for m in interchangeable(asked, precision) if m != model)
        self.max_pixels = max_pixels
        if batch is None:
            batch = self.providers[0] != CPU and getattr(self.segmenter, "batches", False)
        self.batcher: Batcher | None = None
        if batch and isinstance(self.segmenter, OnnxSaliency):  # rembg's sessions run alone
            self.batcher = Batcher(self.segmenter.infer)
            self.segmenter.run = self.batcher

    @functools.cached_property
    def model_id(self) -> str:
        from bgremove.stamps import local_model_id

        return local_model_id(self.model_name if self.model_name in KNOWN else
                              str(self.model_path), self.architecture.type)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def __repr__(self) -> str:
        return (f"LocalSession({self.model_name!r}, providers={self.providers!r}, "
                f"precision={self.precision.value!r})")

    def process(self, data: bytes, options: RemovalOptions) -> Result:
        image = decode(data, max_pixels=self.max_pixels, max_size=options.max_size)
        return Result(encode(self._cutout(image, options), options.output_format,
                             image.icc_profile))

    def remove_image(self, image: Image.Image, options: RemovalOptions) -> Image.Image:
        decoded = from_pil(image, max_pixels=self.max_pixels, max_size=options.max_size)
        cutout = self._cutout(decoded, options)
        if decoded.icc_profile is not None and cutout.mode != "L":
            cutout.info["icc_profile"] = decoded.icc_profile  # Image.save() writes it
        return cutout

    def _cutout(self, image: Decoded, options: RemovalOptions) -> Image.Image:
        alpha = cutout_alpha(self.segmenter, image.rgb, options.mode, options.smooth_edges,
                             image.image)
        return compose(image.rgb, alpha, options, image.alpha)
