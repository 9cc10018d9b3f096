"""The library's surface: the removal options declared once, `remove()` forwarding to them,
library errors in keyword words, and `__all__`, the lazy table and the type stubs in step."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

import bgremove
from bgremove.config import DEFAULTS, Settings
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
