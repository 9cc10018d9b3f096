"""Where the API key comes from, in which order, and that it never shows itself."""

from __future__ import annotations

import pytest

from bgremove.apikey import Secret
from bgremove.cli.settings import api_key_from, load
from bgremove.errors import UsageError


def key(flags=None, environ=None, config_text=None, tmp_path=None):
    config = None
    if config_text is not None:
        config = tmp_path / "config.toml"
        config.write_text(config_text)
    return api_key_from(load(flags or {}, config=str(config) if config else None,
                             environ=environ or {}))


def test_the_stronger_source_wins_and_the_key_itself_wins_a_tie(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    env = {"BGREMOVE_API_KEY": "from-env"}
    assert key({"api_key": "from-flag", "api_key_file": str(key_file)}, env) == Secret("from-flag")
    assert key({"api_key_file": str(key_file)}, env) == Secret("from-file")
    assert key({}, env) == Secret("from-env")
    assert key({}, {"BGREMOVE_API_KEY_FILE": str(key_file)}) == Secret("from-file")
    assert key(environ=env, config_text=f'api_key_file = "{key_file}"',
               tmp_path=tmp_path) == Secret("from-env")
    assert key(config_text='api_key = "from-config"', tmp_path=tmp_path) == Secret("from-config")
    assert key({}, {}) is None


def test_a_bad_key_file_is_a_usage_error_that_does_not_quote_it(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        key({"api_key_file": str(tmp_path / "missing")})
    two_words = tmp_path / "two"
    two_words.write_text("sk-secret-part1 sk-secret-part2\n")
    with pytest.raises(UsageError) as caught:
        key({"api_key_file": str(two_words)})
    assert "sk-secret" not in str(caught.value)


def test_secret_does_not_show_itself():
    secret = Secret("sk-abc123")
    assert "sk-abc123" not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == "sk-abc123"
    assert secret.redact("bad key sk-abc123!") == "bad key ***!"
