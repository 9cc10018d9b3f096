"""The library's surface: the removal options declared once, `remove()` forwarding to them,
library errors in keyword words, and `__all__`, the lazy table and the type stubs in step."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove.cli.settings import DEFAULTS, Settings
from bgremove.options import Mode, OutputFormat, RemovalOptions, parse_color


def test_the_config_file_has_every_removal_option_with_its_default():
    for option in fields(RemovalOptions):
        default = getattr(RemovalOptions(), option.name)
        assert option.name in {f.name for f in fields(Settings)}
        setting = getattr(DEFAULTS, option.name)
        assert (parse_color(setting) if option.name == "background_color" else setting) == default
    assert DEFAULTS.removal_options() == RemovalOptions()


def test_build_without_keywords_is_the_defaults():
    assert RemovalOptions.build() == RemovalOptions()
    assert RemovalOptions.of() == RemovalOptions()


def test_remove_takes_options_and_keyword_overrides(samples):
    photo = Image.fromarray(np.full((40, 60, 3), 120, np.uint8))
    with bgremove.new_session(threads=1) as session:
        base = RemovalOptions(mode=Mode.fast, output_format=OutputFormat.png)
        cut = bgremove.remove(photo, base, session=session)
        assert isinstance(cut, Image.Image) and cut.mode == "RGBA"
        filled = bgremove.remove(photo, base, session=session, background_color="red")
        assert filled.mode == "RGB"  # a colour asked for fills the background
        data = bgremove.remove(np.asarray(photo).tobytes() and _png(photo), session=session,
                               mode="fast", output_format="png")
        assert data.startswith(b"\x89PNG")
        with pytest.raises(TypeError):
            bgremove.remove(photo, session=session, no_such_option=True)


def _png(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_all_the_lazy_table_and_the_stubs_agree():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(bgremove))
    stubs: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                stubs.update({alias.name: imp.module for alias in imp.names})
    public = set(bgremove.__all__) - {"__version__"}
    assert public == set(bgremove._PUBLIC) == set(stubs)
    assert all(stubs[name] == module for name, module in bgremove._PUBLIC.items())
    for name in public:
        assert getattr(bgremove, name) is not None


def test_overrides_decide_the_mask_as_build_does():
    default = RemovalOptions()
    assert not RemovalOptions.of(default, background_color="red").include_mask
    assert not RemovalOptions.of(default, output_format="jpeg").include_mask
    assert RemovalOptions.of(default, output_format="png").include_mask
    filled = RemovalOptions.build(background_color="red")
    assert RemovalOptions.of(filled, output_format="png") == RemovalOptions.build(
        background_color="red", output_format="png")
    assert RemovalOptions.of(default, mode="quality").mode is Mode.quality


# -- errors: a Python caller is told of keywords, the command line of flags ---------------------

def test_a_python_caller_is_told_the_keyword_not_the_flag(samples):
    from bgremove.cli.exits import USAGE, exit_code, in_flags

    photo = Image.fromarray(np.full((40, 60, 3), 120, np.uint8))
    with pytest.raises(bgremove.UsageError) as caught:
        bgremove.remove(photo, max_size=-1)
    assert caught.value.option == "max_size" and isinstance(caught.value, ValueError)
    assert "max_size" in str(caught.value) and "--" not in str(caught.value)
    assert in_flags(caught.value).startswith("--max-size ")
    assert exit_code(caught.value) == USAGE

    with pytest.raises(bgremove.UsageError) as caught:
        bgremove.remove(photo, output_format="jpeg", include_mask=True)
    assert "(include_mask=False, or a background_color)" in str(caught.value)
    assert "(--no-include-mask, or a --background-color)" in in_flags(caught.value)


def test_an_image_over_the_limit_names_max_size(tmp_path):
    from bgremove.backends.local import LocalSession
    from bgremove.cli.exits import in_flags

    with LocalSession(threads=1, max_pixels=1000) as session:
        with pytest.raises(bgremove.ImageError) as caught:
            session.remove(_png(Image.new("RGB", (60, 40))))
    assert "max_size=N shrinks bigger photos" in str(caught.value)
    assert "--max-size N shrinks bigger photos" in in_flags(caught.value)


def test_a_batch_s_output_mistake_names_output_and_the_command_line_says_o(tmp_path):
    from bgremove.cli.exits import in_flags

    (tmp_path / "a.png").write_bytes(_png(Image.new("RGB", (8, 8))))
    (tmp_path / "b.png").write_bytes(_png(Image.new("RGB", (8, 8))))
    with pytest.raises(bgremove.UsageError) as caught:
        bgremove.Batch([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "x.png")
    assert str(caught.value).startswith(f"output={tmp_path / 'x.png'}: looks like an image")
    assert in_flags(caught.value).startswith(f"-o {tmp_path / 'x.png'}: looks like an image")


def test_errors_cross_processes_with_their_parts():
    import pickle

    from bgremove.cli.exits import in_flags
    from bgremove.errors import Option

    error = bgremove.AuthenticationFailed("check ", Option("api_key"), " or BGREMOVE_API_KEY")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is bgremove.AuthenticationFailed and str(again) == str(error)
    assert in_flags(again) == "check --api-key or BGREMOVE_API_KEY"
    failed = pickle.loads(pickle.dumps(bgremove.FileFailed("x", request_id="r1")))
    assert failed.request_id == "r1" and str(failed) == "x"


# The command line's own modules: the only ones whose words may name flags (issue 33 moves them
# into bgremove/cli/, also left out below).
def _cli_flags() -> set[str]:
    """Every option of every command, as the command line spells it (`--max-size`, `-o`)."""
    import typer

    from bgremove.cli.app import app

    flags: set[str] = set()
    stack = [typer.main.get_command(app)]
    while stack:
        command = stack.pop()
        flags.update(opt for param in command.params for opt in (*param.opts,
                                                                   *param.secondary_opts)
                     if opt.startswith("-") and opt not in ("--help", "-h"))
        stack.extend(getattr(command, "commands", {}).values())  # a group's commands
    return flags


def test_no_library_message_names_a_flag():
    """The library says `max_credits` (errors.Option); only the command line says
    `--max-credits`. Every string in a library module other than a docstring is checked
    against the flags of every command."""
    import ast
    import re
    from pathlib import Path

    flags = _cli_flags()
    assert {"--max-credits", "--files-from", "-o"} <= flags
    root = Path(bgremove.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                           ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings):
                named = set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", node.value)) & flags
                if named:
                    found.append(f"{relative}:{node.lineno}: {sorted(named)}")
    assert found == []


def test_work_items_and_outcomes_carry_their_error_objects(tmp_path):
    from bgremove.cli.exits import outcome_error

    missing = tmp_path / "missing.jpg"
    batch = bgremove.Batch([missing, tmp_path / "other.jpg"], tmp_path / "out", dry_run=True)
    item = next(iter(batch.plan))
    assert isinstance(item.error, bgremove.FileFailed) and item.error.path == missing
    summary = batch.run()
    failure = summary.failures[0]
    assert isinstance(failure.failure, bgremove.FileFailed) and failure.failure.path == missing
    assert failure.error == "no such file or folder"
    assert outcome_error(failure) == "no such file or folder"


def test_import_and_decode_leave_pillows_limit_and_warnings_alone():
    # numpy, imported first, adds filters of its own; bgremove adds none, nor changes the limit.
    # The 99 MP photo is over Pillow's default limit: opened the usual way, it would warn.
    import subprocess
    import sys

    code = (
        "import warnings, numpy, PIL.Image as I;"
        "before = (I.MAX_IMAGE_PIXELS, list(warnings.filters));"
        "import bgremove, bgremove.imaging.decode as d, io;"
        "out = io.BytesIO(); I.new('RGB', (9000, 11000)).save(out, 'PNG');"
        "d.decode(out.getvalue(), max_size=100);"
        "assert (I.MAX_IMAGE_PIXELS, list(warnings.filters)) == before, I.MAX_IMAGE_PIXELS;"
        "print('ok')")
    proc = subprocess.run([sys.executable, "-W", "error::Warning", "-c", code],
                          capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_device_warning_names_the_keyword_and_the_command_line_the_flag():
    import pickle

    from bgremove.cli.exits import in_flags
    from bgremove.devices import Placement, warning

    said = warning(Placement("cuda", ["CPUExecutionProvider"], "CUDAExecutionProvider"),
                   ["CPUExecutionProvider"])
    assert said is not None and said.startswith("device=cuda: CUDA is installed but")
    assert in_flags(said).startswith("--device cuda: CUDA is installed but")
    assert in_flags(pickle.loads(pickle.dumps(said))) == in_flags(said)  # from a Dask worker
