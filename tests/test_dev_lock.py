"""The development and CI install (``make install``, so ``make test`` and ``.ci/run``) comes
from requirements/dev.txt, pip-compiled from pyproject.toml's ``dev`` extra, and ``make
bench-deps`` adds requirements/bench.txt (``dev`` and ``bench``): each lock pins, with hashes,
every dependency its install needs at a version pyproject.toml allows, and the Makefile
installs from them. Checked offline: no resolver runs here."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.databases import ROOT

DEV_LOCK = ROOT / "requirements" / "dev.txt"
BENCH_LOCK = ROOT / "requirements" / "bench.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
PROJECT = "newsdesk"


def _regenerate(lock: Path) -> str:
    command = next(
        line.lstrip("# ") for line in lock.read_text().splitlines() if line.startswith("#    pip-")
    )
    return f"regenerate the lock with Python 3.11: .venv/bin/{command}"


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _wanted(extras_wanted: list[str]) -> list[str]:
    """The project's dependencies, those of the extras (``newsdesk[...]`` expanded to those
    extras' own) and the build requirements (the project is installed with
    --no-build-isolation)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = project["project"]["optional-dependencies"]
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    pending, seen = list(extras_wanted), set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for spec in extras[extra]:
            requirement = Requirement(spec)
            if canonicalize_name(requirement.name) == PROJECT:
                pending += [e for e in requirement.extras if e not in seen]
            else:
                wanted.append(spec)
    return wanted


@pytest.mark.parametrize(("lock", "extras"), [(DEV_LOCK, ["dev"]), (BENCH_LOCK, ["dev", "bench"])])
def test_the_lock_pins_every_dependency_of_its_install_with_hashes(
    lock: Path, extras: list[str]
) -> None:
    pins = _pins(lock)
    problems = []
    for spec in _wanted(extras):
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        pinned = pins.get(name)
        if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{spec} (lock: {pinned})")
        # The extras' own dependencies (httpx[http2], uvicorn[standard]) too, where installed.
        for extra in requirement.extras:
            try:
                needs = importlib.metadata.requires(requirement.name) or []
            except importlib.metadata.PackageNotFoundError:
                continue  # the bench extra, before `make bench-deps`
            for needed in needs:
                sub = Requirement(needed)
                wanted_here = sub.marker is not None and sub.marker.evaluate({"extra": extra})
                if wanted_here and canonicalize_name(sub.name) not in pins:
                    problems.append(f"{sub.name} (for {spec})")
    assert not problems, f"not in {lock.name}: {problems}; {_regenerate(lock)}"
    text = lock.read_text()
    assert "with Python 3.11" in text
    assert all(f"--extra={extra}" in text for extra in extras) and "--generate-hashes" in text
    # Every pin carries its files' hashes (pip then refuses anything unpinned), and nothing
    # but pins is installed: no path or URL requirement (the project itself comes after).
    blocks = [b for b in re.split(r"\n(?=[^\s#])", text) if b.strip() and not b.startswith("#")]
    assert all(PIN.match(block) for block in blocks), [b for b in blocks if not PIN.match(b)]
    assert len(blocks) == len(pins)
    assert all("--hash=sha256:" in block for block in blocks)
    assert PROJECT not in pins


def test_the_bench_lock_keeps_the_dev_locks_pins() -> None:
    """``make bench-deps`` installs over the dev install: it must not move a dev tool."""
    bench = _pins(BENCH_LOCK)
    moved = {name: (pin, bench.get(name)) for name, pin in _pins(DEV_LOCK).items()}
    moved = {name: pins for name, pins in moved.items() if pins[0] != pins[1]}
    assert not moved, (
        f"{moved}: cp requirements/dev.txt requirements/bench.txt, then {_regenerate(BENCH_LOCK)}"
    )


def _rule(target: str) -> tuple[set[str], list[str]]:
    """A Makefile rule's prerequisites and its pip install lines."""
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(rf"^{re.escape(target)}: (.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert rule is not None, target
    installs = [line for line in rule.group(2).splitlines() if " pip install " in line]
    return set(rule.group(1).split()), installs


def test_make_install_installs_from_the_locks_and_rebuilds_when_they_change() -> None:
    prerequisites, installs = _rule("$(STAMP)")
    assert prerequisites >= {"pyproject.toml", "requirements/dev.txt"}
    assert len(installs) == 2, installs
    assert "--require-hashes -r requirements/dev.txt" in installs[0]
    assert "--no-deps" in installs[1] and installs[1].endswith(" -e .")
    prerequisites, installs = _rule("bench-deps")
    assert "$(STAMP)" in prerequisites
    assert len(installs) == 1 and installs[0].endswith("--require-hashes -r requirements/bench.txt")
