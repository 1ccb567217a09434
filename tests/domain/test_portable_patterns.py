"""service.domain.portable_patterns: the spelled-out class the document shows holds exactly the
characters the server's own pattern accepts, and reads the same in Python's ``re`` and in an
ECMA-262 engine (jsonschema-rs)."""

from __future__ import annotations

import random
import re
import warnings
from typing import Annotated

import jsonschema_rs
from pydantic import Field, TypeAdapter, ValidationError

from service.domain.portable_patterns import spelled_out
from service.domain.schemas import TAG_PATTERN, WORD, Tag

CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def test_a_tag_pattern_means_the_same_to_the_server_python_and_ecma_262() -> None:
    shown = TypeAdapter(Tag).json_schema()["pattern"]
    assert "\\p" not in shown
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning about set syntax either
        python = re.compile(shown)
    ecma = jsonschema_rs.Draft202012Validator({"type": "string", "pattern": shown})
    server = TypeAdapter(Annotated[str, Field(pattern=TAG_PATTERN)])
    pick = random.Random(23)
    samples = ["café", "日本", "c++", "_x", " x", "-x", "x!", "٣", "\U0001d49cb", "ⅷ", "a\u0301"]
    for _ in range(20_000):
        samples.append(
            "".join(
                chr(pick.choice(CODE_POINTS)) if pick.random() < 0.5 else pick.choice("a9_ .+#-é")
                for _ in range(pick.randint(1, 4))
            )
        )
    for text in samples:
        try:
            server.validate_python(text)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == bool(python.search(text)) == ecma.is_valid(text), repr(text)


def test_the_class_is_spelled_out_as_ranges_of_literal_characters() -> None:
    members = spelled_out(WORD)
    assert members.startswith("0-9A-Z_a-z")  # ASCII digits, capitals, `_`, small letters
    word = re.compile(f"[{members}]")
    assert word.fullmatch("日") and word.fullmatch("\U00020000")  # CJK, BMP and beyond
    assert not word.fullmatch("-") and not word.fullmatch("\u0301")  # a combining mark
