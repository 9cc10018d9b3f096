"""Settings from the config file and the environment, with flags winning; `bgremove config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bgremove.cli import settings as config
from bgremove.errors import UsageError
from bgremove.options import Mode, OutputFormat
from tests.conftest import cli_env, run_cli
from tests.inprocess import invoke

KEY = "sk_live_0123456789abcdef7c3e"


def write_config(folder: Path, text: str) -> Path:
    path = folder / "bgremove" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_config(tmp_path):
    settings = config.load(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings == config.Settings()
    assert settings.mode is Mode.balanced and settings.output_format is OutputFormat.webp
    assert settings.workers is None and settings.backend == "local" and settings.api_key is None
    assert not settings.config_found
    assert settings.config_file == tmp_path / "bgremove" / "config.toml"


def test_flags_win_over_environment_over_file_over_defaults(tmp_path):
    write_config(tmp_path, 'mode = "quality"\nformat = "png"\nworkers = 3\n'
                           'include-mask = false\napi_key = "from-file-key-123456"\n')
    environ = {"XDG_CONFIG_HOME": str(tmp_path), "BGREMOVE_FORMAT": "webp",
               "BGREMOVE_WORKERS": "5", "BGREMOVE_MODE": ""}  # empty counts as unset
    settings = config.load({"workers": 7}, environ=environ)
    assert settings.mode is Mode.quality and settings.sources["mode"] == "config file"
    assert settings.output_format is OutputFormat.webp
    assert settings.sources["output_format"] == "env BGREMOVE_FORMAT"
    assert settings.workers == 7 and settings.sources["workers"] == "command line"
    assert settings.include_mask is False
    assert settings.smooth_edges is True and settings.sources.get("smooth_edges") is None
    assert settings.api_key == "from-file-key-123456"
    assert "from-file-key" not in repr(settings)  # nor in any traceback that shows it
    options = settings.removal_options()
    assert (options.mode, options.output_format, options.include_mask) == (
        Mode.quality, OutputFormat.webp, False)


def test_config_path_precedence(tmp_path):
    home_config = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config.config_path(None, home_config) == (tmp_path / "xdg/bgremove/config.toml", False)
    assert config.config_path(None, {"XDG_CONFIG_HOME": "relative"})[0] == (
        Path.home() / ".config/bgremove/config.toml")  # the XDG spec ignores relative paths
    env = {**home_config, "BGREMOVE_CONFIG": str(tmp_path / "env.toml")}
    assert config.config_path(None, env) == (tmp_path / "env.toml", True)
    assert config.config_path(str(tmp_path / "flag.toml"), env) == (tmp_path / "flag.toml", True)
    with pytest.raises(UsageError, match="flag.toml: not found"):
        config.load(config=str(tmp_path / "flag.toml"), environ=env)


@pytest.mark.parametrize("text, message", [
    ('mdoe = "fast"\n', "unknown setting 'mdoe'"),
    ('[remote]\napi_key = "x"\n', "unknown setting 'remote'"),
    ('mode = "slow"\n', "config.toml: mode: 'slow' is not valid: expected one of fast"),
    ("workers = 0\n", "workers: 0 is not valid"),
    ("workers = true\n", "workers: True is not valid"),
    ('background_color = "#12"\n', "not a colour"),
    ('api_key = 12345\n', "api_key: (hidden) is not valid"),
    ("mode = \n", "not valid TOML"),
])
def test_bad_config_files_name_the_file_and_the_key(tmp_path, text, message):
    path = write_config(tmp_path, text)
    with pytest.raises(UsageError) as error:
        config.load(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert str(path) in str(error.value) and message in str(error.value)


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(UsageError, match="BGREMOVE_INCLUDE_MASK: 'maybe' is not valid"):
        config.load(environ={"XDG_CONFIG_HOME": str(tmp_path), "BGREMOVE_INCLUDE_MASK": "maybe"})


def test_config_show_masks_the_key_and_names_sources(tmp_path):
    path = write_config(tmp_path, f'mode = "fast"\napi_key = "{KEY}"\n')
    proc = invoke("config", "show", env=cli_env(XDG_CONFIG_HOME=str(tmp_path),
                                                 BGREMOVE_FORMAT="png"))
    assert proc.returncode == 0, proc.stderr.decode()
    shown = proc.stdout.decode()
    assert KEY not in shown and KEY[:-4] not in shown
    assert f'"…{KEY[-4:]}"' in shown
    lines = {line.split()[0]: line for line in shown.splitlines() if not line.startswith("#")}
    assert set(lines) == set(config.SETTING_NAMES)
    assert '"fast"' in lines["mode"] and "# config file" in lines["mode"]
    assert '"png"' in lines["output_format"] and "# env BGREMOVE_FORMAT" in lines["output_format"]
    assert "# default" in lines["workers"]
    assert f"config file: {path} (found)" in shown

    proc = invoke("config", "path", "--config", str(tmp_path / "other.toml"))
    assert proc.stdout.decode().strip() == str(tmp_path / "other.toml")

    bad = write_config(tmp_path, "colour = 'red'\n")
    proc = run_cli("config", "show", env=cli_env(XDG_CONFIG_HOME=str(tmp_path)))
    assert proc.returncode == 2 and str(bad) in proc.stderr.decode()
    assert "unknown setting 'colour'" in proc.stderr.decode()


def test_settings_reach_the_run_and_flags_win(samples, tmp_path):
    """The config file picks png and a grey fill; the environment, then a flag, override."""
    cfg = tmp_path / "team.toml"
    cfg.write_text(f'format = "png"\nmode = "fast"\ninclude_mask = false\n'
                   f'background_color = "#808080"\napi_key = "{KEY}"\n')
    env = cli_env(BGREMOVE_CONFIG=str(cfg))
    photo = str(samples / "chelsea.webp")

    proc = invoke(photo, "-o", str(tmp_path / "out"), "--dry-run", "--json", env=env)
    assert json.loads(proc.stdout)["output"].endswith("chelsea.png")
    env["BGREMOVE_FORMAT"] = "webp"
    proc = invoke(photo, "-o", str(tmp_path / "out"), "--dry-run", "--json", env=env)
    assert json.loads(proc.stdout)["output"].endswith("chelsea.webp")
    proc = invoke(photo, "-o", str(tmp_path / "out"), "--dry-run", "--json", "--format", "png",
                   "--report", str(tmp_path / "report.json"), env=env)
    assert json.loads(proc.stdout)["output"].endswith("chelsea.png")
    report = (tmp_path / "report.json").read_text()
    assert KEY not in report and KEY not in proc.stderr.decode()  # secrets stay secret
    assert json.loads(report)["options"]["background_color"] == "#808080"

    # A real run: the fill colour and the mode come from the file; the -o file's extension
    # names the format, whatever BGREMOVE_FORMAT says.
    proc = invoke(photo, "-o", str(tmp_path / "cut.png"), env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    image = Image.open(tmp_path / "cut.png")
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.getpixel((0, 0)) == (128, 128, 128)
    proc = invoke(photo, "-o", str(tmp_path / "flag.png"), "--include-mask", env=env)
    assert Image.open(tmp_path / "flag.png").mode == "RGBA"

    proc = invoke(photo, "-o", str(tmp_path / "x.png"), "--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2 and "nope.toml: not found" in proc.stderr.decode()
