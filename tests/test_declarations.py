"""Each setting is declared once (bgremove/cli/settings.py) and every command that takes it takes
it as declared: the same flag, spellings, help, section and default; the library's keywords carry
the same names. And the commands that once drifted from the settings now read them: `frames`
takes the precision, `serve` the model, precision and workers from the environment and the
config file."""

from __future__ import annotations

import inspect
import io
import socket
import subprocess
import sys
import time
from dataclasses import fields

import numpy as np
import pytest
import typer
from PIL import Image

import bgremove
from bgremove.api import open_local
from bgremove.cli.app import app
from bgremove.cli.params import flag_name
from bgremove.cli.settings import DECLARED, DEFAULTS, SETTING_NAMES, Settings
from bgremove.options import RemovalOptions
from tests.conftest import cli_env
from tests.inprocess import invoke


def commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


SETTING_PARAMS = [(" ".join(path), param) for path, command in commands()
                  for param in command.params if param.name in SETTING_NAMES]


def test_the_commands_take_settings():
    taking = {path for path, _ in SETTING_PARAMS}
    assert {"remove", "frames", "serve"} <= taking


@pytest.mark.parametrize("path, param", SETTING_PARAMS,
                         ids=[f"{path} {param.name}" for path, param in SETTING_PARAMS])
def test_every_setting_flag_is_as_declared(path, param):
    declared = DECLARED[param.name]
    assert param.opts[0] == flag_name(param.name) or flag_name(param.name) in param.opts
    assert set(param.opts) - {flag_name(param.name)} == set(declared.flags), path
    assert param.help == declared.help
    assert param.rich_help_panel == declared.section
    default = getattr(DEFAULTS, param.name)
    assert (param.default.value if hasattr(param.default, "value") else param.default) == (
        default.value if hasattr(default, "value") else default)
    if declared.metavar is not None:
        assert param.metavar == declared.metavar


def test_a_flag_that_names_a_setting_is_that_setting():
    # Only `serve --rate-limit` (the limit a server puts on its clients) shares a setting's
    # spelling without being it: it is the server's own, in its own section.
    for path, command in commands():
        for param in command.params:
            spelled = {opt for opt in getattr(param, "opts", []) if opt.startswith("--")}
            named = {flag_name(name) for name in SETTING_NAMES} & spelled
            if named and param.name not in SETTING_NAMES:
                assert (" ".join(path), param.name) == ("serve", "requests_per_key")
                assert param.rich_help_panel == "Server"


def test_the_removal_options_and_the_library_keywords_carry_the_declared_names():
    removal = {f.name for f in fields(RemovalOptions)}
    assert removal <= set(SETTING_NAMES)
    build = set(inspect.signature(RemovalOptions.build).parameters)
    assert build == removal
    engine = {"model", "device", "precision", "workers", "threads"}
    assert engine <= set(inspect.signature(open_local).parameters)
    assert engine - {"workers"} <= set(inspect.signature(bgremove.new_session).parameters)
    for name in SETTING_NAMES:
        assert DECLARED[name].help and DECLARED[name].section
    assert set(SETTING_NAMES) == {f.name for f in fields(Settings) if f.metadata}


def _frame(width=64, height=48) -> bytes:
    with Image.open("samples/rocket.jpg") as photo:
        return photo.convert("RGB").resize((width, height)).tobytes()


def _frames_matte(*flags: str, env: dict[str, str] | None = None) -> np.ndarray:
    result = invoke("frames", "64", "48", "--raw", "--only-mask", "--mode", "fast", "-q",
                    "--threads", "1", *flags, input=_frame(), env=env)
    assert result.returncode == 0, result.stderr.decode()
    return np.frombuffer(result.stdout, np.uint8).reshape(48, 64).astype(int)


def _library_matte(precision: str) -> np.ndarray:
    frame = Image.frombytes("RGB", (64, 48), _frame())
    with bgremove.new_session(precision=precision, threads=1) as session:
        mask = session.remove(frame, mode="fast", only_mask=True)
    return np.asarray(mask).astype(int)


def test_frames_takes_the_precision_from_the_flag_the_environment_and_the_config(tmp_path):
    int8, fp32 = _library_matte("int8"), _library_matte("fp32")
    assert np.abs(int8 - fp32).max() > 1, "the two builds tell apart on this frame"
    assert np.abs(_frames_matte("--precision", "int8") - int8).max() <= 1
    assert np.abs(_frames_matte("--precision", "fp32") - fp32).max() <= 1
    assert np.abs(_frames_matte() - _library_matte("auto")).max() <= 1  # the same default
    assert np.abs(_frames_matte(env=cli_env(BGREMOVE_PRECISION="int8")) - int8).max() <= 1
    config = tmp_path / "config.toml"
    config.write_text('precision = "int8"\n')
    assert np.abs(_frames_matte("--config", str(config)) - int8).max() <= 1
    config.write_text('precision = "fp32"\n')
    assert np.abs(_frames_matte("--config", str(config)) - fp32).max() <= 1
    # The command line still wins over the environment.
    assert np.abs(_frames_matte("--precision", "fp32", env=cli_env(
        BGREMOVE_PRECISION="int8")) - fp32).max() <= 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(tmp_path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bgremove", "serve", "--port", str(_free_port()), "--db",
         str(tmp_path / "keys.sqlite3"), *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=cli_env(**env))


def test_serve_fails_at_start_naming_a_missing_model_from_the_environment(tmp_path):
    server = _serve(tmp_path, BGREMOVE_MODEL="/missing.onnx")
    try:
        _, stderr = server.communicate(timeout=120)
    finally:
        server.kill()
    assert server.returncode in (2, 5), stderr
    assert "/missing.onnx" in stderr and "Traceback" not in stderr


def test_serve_reads_the_model_precision_and_workers_from_config_and_environment(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('precision = "int8"\nworkers = 3\n')
    server = _serve(tmp_path, BGREMOVE_CONFIG=str(config), BGREMOVE_WORKERS="1")
    try:
        assert server.stderr is not None
        deadline = time.monotonic() + 120
        line = ""
        while "the API will be at" not in line and time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line or server.poll() is None, "the server ended before it listened"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "1 images at once on u2netp-int8" in line, line


def test_frames_refuses_a_bad_setting_from_the_environment_as_a_usage_error():
    result = invoke("frames", "64", "48", "--raw", input=b"", env=cli_env(
        BGREMOVE_PRECISION="int4"))
    assert result.returncode == 2
    assert b"BGREMOVE_PRECISION" in result.stderr and b"fp32, int8, auto" in result.stderr


def test_help_of_remove_is_in_sections():
    result = invoke("remove", "--help")
    text = result.stdout.decode()
    sections = ["Output:", "Model and engine:", "Remote API:", "Runs and CI:", "Messages:"]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)
    assert text.index("--mode") < text.index("Model and engine:") < text.index("--precision")
    assert io.StringIO(text).read().count("--precision") == 1
