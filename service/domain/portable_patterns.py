"""Patterns the OpenAPI document can carry: a Unicode property class (``\\p{L}``) spelled out
as the ranges of characters it holds, found by asking the server's own regex engine.

The server validates with pydantic-core's (Rust) engine, which reads ``\\p{L}``; JSON Schema
patterns are ECMA-262, which reads it only with the ``u`` flag, and Python's ``re`` (what
``openapi-spec-validator`` and schemathesis compile patterns with) not at all. A class of
literal characters and ranges reads the same in all three, so the document states exactly
what the server accepts, of whatever Unicode version its engine knows. The server's own
validation is unchanged: a field keeps its ``\\p`` pattern and only its JSON schema shows the
spelled-out one (``shown_as``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

_PLANES = ((0, 0xD7FF), (0xE000, 0x10FFFF))  # every code point but the surrogates


@functools.cache
def spelled_out(members: str, keep: Callable[[str], bool] | None = None) -> str:
    """The contents of the class ``[members]`` as literal characters and ranges, found by
    bisecting the code points: a span wholly in or wholly out is settled by one match.
    With ``keep``, only the members it keeps (a subset the server's other code agrees on).
    Cached: the first call takes about a second."""
    every = TypeAdapter(Annotated[str, Field(pattern=f"^[{members}]+$")])
    none = TypeAdapter(Annotated[str, Field(pattern=f"^[^{members}]+$")])
    ranges: list[list[int]] = []

    def matches(adapter: TypeAdapter[str], low: int, high: int) -> bool:
        try:
            adapter.validate_python("".join(map(chr, range(low, high + 1))))
        except ValidationError:
            return False
        return True

    def walk(low: int, high: int) -> None:
        if matches(every, low, high):
            if ranges and ranges[-1][1] == low - 1:
                ranges[-1][1] = high
            else:
                ranges.append([low, high])
        elif low < high and not matches(none, low, high):
            middle = (low + high) // 2
            walk(low, middle)
            walk(middle + 1, high)

    for low, high in _PLANES:
        walk(low, high)
    if keep is not None:
        ranges = _runs(c for low, high in ranges for c in range(low, high + 1) if keep(chr(c)))
    special = {"\\", "]", "[", "^", "-"}
    assert not any(chr(low) in special or chr(high) in special for low, high in ranges), members
    return "".join(chr(low) if low == high else f"{chr(low)}-{chr(high)}" for low, high in ranges)


def _runs(code_points: Iterable[int]) -> list[list[int]]:
    """Ascending code points as ``[low, high]`` runs."""
    runs: list[list[int]] = []
    for point in code_points:
        if runs and runs[-1][1] == point - 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    return runs


def shown_as(
    template: Callable[[str], str], members: str, keep: Callable[[str], bool] | None = None
) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that shows the pattern ``template(members)`` with ``members``
    spelled out (only those ``keep`` keeps); the validator keeps reading ``template(members)``
    itself."""

    def rewrite(schema: dict[str, Any]) -> None:
        schema["pattern"] = template(spelled_out(members, keep))

    return rewrite
