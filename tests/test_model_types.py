"""Model files run the way their architecture needs (issue 37): U²-Net, IS-Net, BiRefNet, BEN.

The models here are small graphs built with the `onnx` helper, shaped like each architecture (its
inputs and outputs) but whose outputs are slices of the input they were fed: what the session
reads back is exactly the tensor the model received. So the tests see each architecture's size,
normalisation and channel order, which output is read, and how that output becomes the matte,
without downloading a model.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

import bgremove
from bgremove import stamps
from bgremove.backends.local import LocalSession, OnnxSaliency
from bgremove.cli.settings import load as load_settings
from bgremove.errors import ModelUnavailable, UsageError
from bgremove.models import BUNDLED_PATH, KNOWN, MODEL_TYPES, ModelInfo
from bgremove.models.architectures import (
    ARCHITECTURES,
    U2NET,
    ModelType,
    for_file,
    recognise,
    recognise_file,
)
from bgremove.models.graph import read_signature
from tests.conftest import cli_env, run_cli
from tests.inprocess import invoke

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# A photo of three flat colours, left to right; its brightest value is 200, not 255 (rembg
# divides by the photo's brightest value, so the difference shows).
COLOURS = np.array([[200, 100, 50], [20, 180, 90], [60, 40, 160]], dtype=np.uint8)


def photo(width: int = 300, height: int = 120) -> np.ndarray:
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    for i, colour in enumerate(COLOURS):
        rgb[:, i * width // 3:(i + 1) * width // 3] = colour
    return rgb


def build(path: Path, *, side: int | str = 320, outputs: list[tuple[str, int]],
          input_name: str = "input", batch: int | str = "batch") -> Path:
    """A graph that takes N x 3 x side x side and gives, for each (name, channel) in `outputs`,
    that channel of its input (channel -1: all three, as a multi-channel feature map)."""
    spatial = [side, side]
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, *spatial])
    nodes, values, inits = [], [], []
    for name, channel in outputs:
        if channel < 0:
            nodes.append(helper.make_node("Identity", [input_name], [name]))
            values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                        [batch, 3, *spatial]))
            continue
        starts, ends, axes = f"{name}_s", f"{name}_e", f"{name}_a"
        inits += [helper.make_tensor(starts, TensorProto.INT64, [1], [channel]),
                  helper.make_tensor(ends, TensorProto.INT64, [1], [channel + 1]),
                  helper.make_tensor(axes, TensorProto.INT64, [1], [1])]
        nodes.append(helper.make_node("Slice", [input_name, starts, ends, axes], [name]))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                    [batch, 1, *spatial]))
    graph = helper.make_graph(nodes, "probe", [x], values, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def u2net_like(path: Path, side: int | str = 320) -> Path:
    # the fused map first (here: red), then six side maps
    return build(path, side=side, input_name="input.1",
                 outputs=[("d0", 0)] + [(f"d{i}", i % 3) for i in range(1, 7)])


def isnet_like(path: Path, features: bool = True) -> Path:
    maps = [(f"d{i}", (i - 1) % 3) for i in range(1, 7)]  # d1 (red) is read
    feats = [(f"hx{i}", -1) for i in range(1, 7)] if features else []
    return build(path, side=1024, outputs=maps + feats)


def birefnet_like(path: Path) -> Path:
    return build(path, side=1024, input_name="input_image", outputs=[("output_image", 0)])


def one_output(path: Path, side: int | str = 1024) -> Path:
    """BEN's shape, or any one-output model: nothing in it says which architecture it is."""
    return build(path, side=side, outputs=[("output", 0)])


def normalised(rgb: np.ndarray, mean, std) -> np.ndarray:
    """rembg's BaseSession.normalize, written out: divided by the brightest value, less the
    mean, over the deviation, per channel."""
    x = rgb.astype(np.float64) / rgb.max()
    return (x - np.asarray(mean)) / np.asarray(std)


# -- recognition ----------------------------------------------------------------------------------

def test_the_signature_is_read_as_onnxruntime_reads_it(tmp_path):
    for path in (BUNDLED_PATH, u2net_like(tmp_path / "u.onnx"), isnet_like(tmp_path / "i.onnx"),
                 birefnet_like(tmp_path / "b.onnx")):
        sig = read_signature(path)
        sess = ort.InferenceSession(str(path))
        assert [(t.name, list(t.shape)) for t in sig.inputs] == [
            (i.name, i.shape) for i in sess.get_inputs()]
        assert [(t.name, list(t.shape)) for t in sig.outputs] == [
            (o.name, o.shape) for o in sess.get_outputs()]


def test_weights_listed_as_inputs_are_not_inputs(tmp_path):
    # Older exporters (IR 3) list every weight among the graph's inputs as well.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 320, 320])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
    outs = [helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, [1, 3, 320, 320])
            for i in range(7)]
    nodes = [helper.make_node("Mul", ["x", "w"], [f"o{i}"]) for i in range(7)]
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(nodes, "old", [x, w], outs, initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "old.onnx"
    onnx.save(model, path)
    assert [t.name for t in read_signature(path).inputs] == ["x"]


@pytest.mark.parametrize(("make", "expected"), [
    (u2net_like, ModelType.u2net),
    (lambda p: u2net_like(p, side="height"), ModelType.u2net),
    (isnet_like, ModelType.isnet),
    (lambda p: isnet_like(p, features=False), ModelType.isnet),
    (birefnet_like, ModelType.birefnet),
    (lambda p: one_output(p, side=320), ModelType.u2net),
    (one_output, None),  # BEN, or a BiRefNet under other names: not told apart
    (lambda p: one_output(p, side="height"), None),
    (lambda p: build(p, side=1024, outputs=[(f"o{i}", 0) for i in range(3)]), None),
])
def test_what_the_graph_tells(tmp_path, make, expected):
    found = recognise(read_signature(make(tmp_path / "m.onnx")))
    assert (found.architecture.type if found.architecture else None) is expected, found.reason
    assert found.reason


def test_rembgs_own_files_are_known_by_their_checksum(tmp_path, monkeypatch):
    # A file whose graph does not tell, pinned in the registry as an IS-Net of rembg's: as an
    # isnet-general-use.onnx given by path would be, were its graph not IS-Net's shape.
    path = one_output(tmp_path / "rembgs.onnx")
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    size_mb = path.stat().st_size / 2**20
    monkeypatch.setitem(KNOWN, "isnet-test", ModelInfo(
        "isnet-test", "isnet-test.onnx", 1024, size_mb, f"md5:{digest}", architecture="isnet"))
    found = recognise_file(path)
    assert found.architecture is ARCHITECTURES[ModelType.isnet]
    assert found.reason == "rembg's isnet-test file, by its checksum"
    path.write_bytes(path.read_bytes() + b"\0")  # one byte more: another file, not told
    assert recognise_file(path).architecture is None


def test_the_bundled_model_and_rembgs_u2netp_are_u2net():
    assert recognise(read_signature(BUNDLED_PATH)).architecture is U2NET
    original = Path(__file__).resolve().parents[2] / "shared" / "models" / "u2netp.onnx"
    if original.is_file():  # rembg's file: fixed 320 px, five outputs' shapes left undeclared
        assert recognise(read_signature(original)).architecture is U2NET


# -- what each architecture receives, and how its output becomes the matte -------------------------

@pytest.mark.parametrize(("make", "kind", "side", "mean", "std"), [
    (u2net_like, "u2net", 320, IMAGENET_MEAN, IMAGENET_STD),
    (isnet_like, "isnet", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
    (birefnet_like, "birefnet", 1024, IMAGENET_MEAN, IMAGENET_STD),
    (one_output, "ben", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
])
def test_each_architecture_receives_its_size_normalisation_and_channel_order(
        tmp_path, make, kind, side, mean, std):
    path = make(tmp_path / f"{kind}.onnx")
    model = OnnxSaliency(path, threads=1, architecture=for_file(path, kind))
    assert model.prepare(photo()).shape == (1, 3, side, side)  # any photo, resized
    # At the model's own size (no resampling to blur the colours' values), each colour band
    # holds the colour normalised, in RGB order.
    fed = model.prepare(photo(side, side))
    assert fed.dtype == np.float32
    expected = normalised(COLOURS[None], mean, std)[0]  # 3 colours x 3 channels
    for i in range(3):
        column = int((i + 0.5) * side / 3)
        np.testing.assert_allclose(fed[0, :, side // 2, column], expected[i], atol=1e-5)
    # The model's output that is read is the red channel it was fed (the probe's design).
    raw = model.run(fed)
    assert raw.shape == (1, side, side)
    np.testing.assert_allclose(raw[0], fed[0, 0], atol=1e-6)


def test_u2net_and_isnet_maps_are_min_max_scaled(tmp_path):
    rgb = photo()
    for path in (u2net_like(tmp_path / "u.onnx"), isnet_like(tmp_path / "i.onnx")):
        model = OnnxSaliency(path, threads=1, architecture=for_file(path))
        raw = model.predict_raw(rgb)
        matte = model.predict(rgb)
        np.testing.assert_allclose(matte, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
        assert matte.min() == 0.0 and matte.max() == pytest.approx(1.0)


def test_birefnet_reads_its_last_output_as_a_logit(tmp_path):
    # Two outputs, coarse then final: BiRefNet's final prediction is its last one.
    path = build(tmp_path / "b2.onnx", side=1024, outputs=[("coarse", 1), ("final", 0)])
    model = OnnxSaliency(path, threads=1, architecture=for_file(path, "birefnet"))
    rgb = photo()
    logit = model.prepare(rgb)[0, 0].astype(np.float64)  # red: the "final" output
    np.testing.assert_allclose(model.predict_raw(rgb), logit, atol=1e-6)
    sigmoid = 1 / (1 + np.exp(-logit))
    expected = (sigmoid - sigmoid.min()) / (sigmoid.max() - sigmoid.min())
    matte = model.predict(rgb)
    np.testing.assert_allclose(matte, expected, atol=1e-5)
    # the sigmoid matters: the same map min-max scaled without it is another matte
    linear = (logit - logit.min()) / (logit.max() - logit.min())
    assert np.abs(linear - expected).max() > 0.05


def test_a_session_runs_a_model_file_as_its_architecture(tmp_path):
    """Through the whole pipeline: the matte of a fast, hard-edged run is the model's map."""
    path = birefnet_like(tmp_path / "b.onnx")
    rgb = photo()
    with bgremove.new_session(str(path), threads=1) as session:
        assert session.architecture.type is ModelType.birefnet
        mask = session.remove(rgb, mode="fast", only_mask=True, smooth_edges=False)
    # red normalised: 0.90 (red band) / -2.03 / -1.11 (blue) -> sigmoid -> min-max: 1, 0, 0.21
    alpha = np.asarray(mask)
    assert mask.size == (300, 120)
    assert (alpha[:, 10:90] == 255).all() and (alpha[:, 110:290] == 0).all()


# -- refusals -------------------------------------------------------------------------------------

def test_an_unrecognisable_file_is_refused_naming_model_type(tmp_path, samples):
    path = one_output(tmp_path / "ben.onnx")
    with pytest.raises(ModelUnavailable) as caught:
        bgremove.new_session(str(path), threads=1)
    assert caught.value.option == "model_type" and "model_type" in str(caught.value)
    assert "ben.onnx" in str(caught.value) and "1 output at 1024 px" in str(caught.value)
    with pytest.raises(ModelUnavailable):  # nor can it stamp outputs
        stamps.local_model_id(str(path))
    # Named, it runs.
    with bgremove.new_session(str(path), threads=1, model_type="ben") as session:
        assert session.architecture is ARCHITECTURES[ModelType.ben]

    out = tmp_path / "cut.png"
    proc = invoke(str(samples / "coffee.png"), "-o", str(out), "--model", str(path))
    assert proc.returncode == 2 and not out.exists()
    assert "--model-type" in proc.stderr.decode()
    proc = invoke(str(samples / "coffee.png"), "-o", str(out), "--model", str(path),
                  "--model-type", "ben", "--mode", "fast")
    assert proc.returncode == 0, proc.stderr.decode()
    assert Image.open(out).size == Image.open(samples / "coffee.png").size


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"these are not weights\n")
    with pytest.raises(ModelUnavailable, match="not an ONNX model"):
        bgremove.new_session(str(path), threads=1)


def test_model_type_contradicting_a_known_model_is_refused():
    with pytest.raises(ModelUnavailable) as caught:
        bgremove.new_session(model_type="isnet", threads=1)
    assert caught.value.option == "model_type" and "u2netp is U²-Net" in str(caught.value)
    with pytest.raises(ModelUnavailable, match="not an architecture"):
        bgremove.new_session(model_type="yolo", threads=1)
    with bgremove.new_session(model_type="u2net", threads=1) as session:  # says what it is
        assert session.architecture is U2NET


def test_model_type_is_a_setting(tmp_path):
    assert MODEL_TYPES == tuple(t.value for t in ModelType)  # the settings' list is the enum's
    settings = load_settings({}, environ={"BGREMOVE_MODEL_TYPE": "isnet",
                                          "XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.model_type == "isnet"
    config = tmp_path / "config.toml"
    config.write_text('model-type = "birefnet"\n')
    assert load_settings({}, config=str(config), environ={}).model_type == "birefnet"
    assert load_settings({"model_type": "ben"}, config=str(config),
                         environ={}).model_type == "ben"
    config.write_text('model_type = "sam"\n')
    with pytest.raises(UsageError, match="model_type"):
        load_settings({}, config=str(config), environ={})


def test_remote_backend_refuses_model_type(samples, tmp_path):
    proc = invoke(str(samples / "coffee.png"), "-o", str(tmp_path / "x.png"), "--backend",
                  "remote", "--api-key", "sk-test-0000000000", "--model-type", "isnet")
    assert proc.returncode == 2 and "--model-type is for the local backend" in (
        proc.stderr.decode())


# -- stamps ---------------------------------------------------------------------------------------

def test_the_bundled_model_keeps_its_stamp_and_its_maps(samples):
    bundled = KNOWN["u2netp"].checksum
    assert stamps.local_model_id(None) == bundled
    assert stamps.local_model_id(None, "u2net") == bundled
    assert stamps.local_model_id(str(BUNDLED_PATH)) == bundled  # a copy by path: same model
    session = LocalSession(threads=1, precision="fp32")  # the fp32 file's own map, below
    assert session.model_id == bundled and session.segmenter.any_size  # quality's views stay
    # Its map is what the code before architectures computed: ImageNet-normalised 320-px input,
    # the first output, min-max scaled.
    rgb = np.asarray(Image.open(samples / "coffee.png").convert("RGB"))
    small = np.asarray(Image.fromarray(rgb).resize((320, 320), Image.Resampling.LANCZOS,
                                                   reducing_gap=3.0), dtype=np.float32)
    x = (small / small.max() - IMAGENET_MEAN) / IMAGENET_STD
    raw_session = ort.InferenceSession(str(BUNDLED_PATH))
    (out,) = raw_session.run([raw_session.get_outputs()[0].name],
                             {"input.1": x.transpose(2, 0, 1)[None].astype(np.float32)})
    pred = out[0, 0]
    expected = (pred - pred.min()) / (pred.max() - pred.min())
    np.testing.assert_allclose(session.segmenter.predict(rgb), expected, atol=1e-5)


def test_a_file_is_stamped_with_its_architecture_unless_u2net(tmp_path):
    u2 = u2net_like(tmp_path / "u.onnx")
    content = "sha256:" + hashlib.sha256(u2.read_bytes()).hexdigest()
    assert stamps.local_model_id(str(u2)) == content  # as before: U²-Net is how it always ran
    isnet = isnet_like(tmp_path / "i.onnx")
    content = "sha256:" + hashlib.sha256(isnet.read_bytes()).hexdigest()
    assert stamps.local_model_id(str(isnet)) == f"{content} as isnet"
    assert stamps.local_model_id(str(isnet), "isnet") == f"{content} as isnet"
    assert stamps.local_model_id(str(isnet), "ben") == f"{content} as ben"
    with LocalSession(str(isnet), threads=1) as session:
        assert session.model_id == f"{content} as isnet"


# -- models pulled under a name, and `models list` ------------------------------------------------

def test_a_custom_model_in_the_cache_shows_and_runs_as_its_architecture(tmp_path, samples):
    cache = tmp_path / "cache"
    cache.mkdir()
    isnet_like(cache / "acme-isnet.onnx")
    one_output(cache / "acme-ben.onnx")
    env = cli_env(U2NET_HOME=str(cache))
    env.pop("BGREMOVE_MODEL_MIRROR", None)

    rows = {r["name"]: r for r in json.loads(invoke("models", "list", "--json", env=env).stdout)
            ["models"]}
    assert rows["acme-isnet"]["architecture"] == "isnet"
    assert "IS-Net's six side maps" in rows["acme-isnet"]["note"]
    assert rows["acme-ben"]["architecture"] is None
    assert "--model-type" in rows["acme-ben"]["note"]
    assert rows["u2netp"]["architecture"] == "u2net"
    assert rows["birefnet-general"]["architecture"] == "birefnet"
    table = invoke("models", "list", env=env).stdout.decode()
    assert "isnet" in table and "acme-ben: your own model; run it with --model-type" in table

    out = tmp_path / "cut.png"
    photo_path = samples / "coffee.png"
    proc = invoke(str(photo_path), "-o", str(out), "--model", "acme-ben", env=env)
    assert proc.returncode == 2 and "--model-type" in proc.stderr.decode()
    proc = invoke(str(photo_path), "-o", str(out), "--model", "acme-isnet", "--mode", "fast",
                  env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    proc = invoke(str(photo_path), "-o", str(out), "--model", "acme-ben", "--mode", "fast",
                  env={**env, "BGREMOVE_MODEL_TYPE": "ben"})
    assert proc.returncode == 0, proc.stderr.decode()


# -- the other commands that load a model -------------------------------------------------------

def test_frames_runs_a_model_file_as_named(tmp_path):
    path = one_output(tmp_path / "ben.onnx")
    frames = np.concatenate([photo(30, 12)] * 2).tobytes()  # two 30 x 12 frames
    args = ("frames", "30", "12", "--raw", "--only-mask", "--mode", "fast", "--no-smooth-edges",
            "--model", str(path))
    refused = run_cli(*args, input=frames)
    assert refused.returncode == 2 and b"--model-type" in refused.stderr
    result = run_cli(*args, "--model-type", "ben", input=frames)
    assert result.returncode == 0, result.stderr.decode()
    masks = np.frombuffer(result.stdout, dtype=np.uint8).reshape(2, 12, 30)
    # red, normalised as BEN is fed, is highest in the red band: the matte's one opaque band
    assert (masks[:, :, 1:9] == 255).all() and (masks[:, :, 11:] == 0).all()


def test_serve_refuses_an_unrecognisable_model_file_naming_model_type(tmp_path):
    db = str(tmp_path / "keys.sqlite3")
    assert invoke("keys", "create", "--email", "a@example.com", "--credits", "1",
                  "--db", db).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    proc = invoke("serve", "--port", port, "--db", db, "--model",
                  str(one_output(tmp_path / "ben.onnx")))
    assert proc.returncode == 2 and "--model-type" in proc.stderr.decode()


def test_a_cluster_runs_a_model_file_as_named(tmp_path, samples):
    pytest.importorskip("distributed")
    path = one_output(tmp_path / "ben.onnx")
    out = tmp_path / "out"
    args = (str(samples / "coffee.png"), "-o", str(out), "--mode", "fast", "--model", str(path),
            "--cluster", "local:1")
    refused = run_cli(*args)
    assert refused.returncode == 2 and b"--model-type" in refused.stderr
    # The worker loads the file itself, and would refuse it unnamed: it got the type.
    result = run_cli(*args, "--model-type", "ben")
    assert result.returncode == 0, result.stderr.decode()
    stamp = json.loads(stamps.read(out / "coffee.webp"))
    assert stamp["model"].endswith(" as ben")
