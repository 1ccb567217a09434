""".env.example lists every setting of service.core.settings with its actual default, so it
cannot drift from the code: copied to .env unchanged, or with every line uncommented, it
configures exactly the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from service.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / ".env.example"
ENTRY = re.compile(r"^# ?([A-Z][A-Z0-9_]*=.*)$")


def _entries() -> list[str]:
    """The example's ``# NAME=value`` lines, uncommented."""
    return [m.group(1) for line in EXAMPLE.read_text().splitlines() if (m := ENTRY.match(line))]


def test_every_setting_is_listed_once() -> None:
    names = [entry.partition("=")[0] for entry in _entries()]
    fields = [name.upper() for name in Settings.model_fields]
    assert sorted(set(fields) - set(names)) == [], "settings missing from .env.example"
    assert sorted({n for n in names if names.count(n) > 1}) == [], "listed twice"


def test_every_listed_setting_has_its_actual_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    fields = {name.upper() for name in Settings.model_fields}
    uncommented = tmp_path / "all.env"
    uncommented.write_text("\n".join(_entries()) + "\n")
    values = {k: v for k, v in dotenv_values(uncommented).items() if k in fields}
    # An empty value stands for "unset": the default must then be None or an empty list.
    unset = sorted(k for k, v in values.items() if not v)
    for name in unset:
        assert Settings.model_fields[name.lower()].default in (None, []), name
    given = tmp_path / "given.env"
    given.write_text("".join(f"{e}\n" for e in _entries() if e.partition("=")[0] not in unset))
    defaults = Settings(_env_file=None).model_dump()
    example = Settings(_env_file=given).model_dump()
    wrong = {k: (example[k], defaults[k]) for k in defaults if example[k] != defaults[k]}
    assert wrong == {}, "in .env.example (listed, default)"
