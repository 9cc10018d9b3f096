"""Where the API key comes from, in which order, and that it never shows itself."""

from __future__ import annotations

import pytest

from bgremove.apikey import ENV_API_KEY, Secret, resolve_api_key
from bgremove.errors import UsageError


def test_precedence_flag_then_file_then_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    env = {ENV_API_KEY: "from-env"}
    assert resolve_api_key("from-flag", key_file, env) == Secret("from-flag")
    assert resolve_api_key(None, key_file, env) == Secret("from-file")
    assert resolve_api_key(None, None, env) == Secret("from-env")
    assert resolve_api_key(None, None, {}) is None
    assert resolve_api_key(None, None, {ENV_API_KEY: "  "}) is None


def test_a_bad_key_file_is_a_usage_error_that_does_not_quote_it(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        resolve_api_key(None, tmp_path / "missing", {})
    two_words = tmp_path / "two"
    two_words.write_text("sk-secret-part1 sk-secret-part2\n")
    with pytest.raises(UsageError) as caught:
        resolve_api_key(None, two_words, {})
    assert "sk-secret" not in str(caught.value)


def test_secret_does_not_show_itself():
    secret = Secret("sk-abc123")
    assert "sk-abc123" not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == "sk-abc123"
    assert secret.redact("bad key sk-abc123!") == "bad key ***!"
