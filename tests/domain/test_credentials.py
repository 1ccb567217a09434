"""service.domain.credentials: key and token formats, checked without a database."""

from __future__ import annotations

from service.domain.credentials import (
    api_key_prefix,
    digest,
    is_session_token,
    new_api_key,
    new_session_token,
)


def test_a_new_key_checks_out_and_names_its_prefix() -> None:
    key, prefix = new_api_key()
    assert key.startswith(prefix) and prefix.startswith("nd_") and len(prefix) == 13
    assert len(key) == 51
    assert api_key_prefix(key) == prefix


def test_keys_are_unique() -> None:
    assert len({new_api_key()[0] for _ in range(1000)}) == 1000


def test_any_single_character_change_breaks_the_checksum() -> None:
    key, _ = new_api_key()
    for position in range(3, len(key)):
        replacement = "0" if key[position] != "0" else "1"
        assert api_key_prefix(key[:position] + replacement + key[position + 1 :]) is None


def test_malformed_keys_are_refused() -> None:
    key, _ = new_api_key()
    for bad in ("", "nd_", key[:-1], key + "x", "xx" + key[2:], key.replace(key[5], "-", 1)):
        assert api_key_prefix(bad) is None


def test_session_tokens_are_recognised_and_hashed() -> None:
    token = new_session_token()
    assert is_session_token(token) and not is_session_token(token[:-1])
    assert api_key_prefix(token) is None
    assert len(digest(token)) == 32 and digest(token) != digest(new_session_token())
