"""The image command's parts that need no Docker daemon (``make image-test`` builds and runs
the image itself: tests/image/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.cli import image


def test_the_base_is_the_dockerfiles_build_argument(tmp_path: Path) -> None:
    assert image.default_base() == "python:3.11-slim-bookworm"
    other = tmp_path / "Dockerfile"
    other.write_text("# no base here\nFROM scratch\n")
    with pytest.raises(ValueError, match="ARG BASE"):
        image.default_base(other)


def test_names_the_host_maps_elsewhere_are_passed_to_the_build(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost runsc\n"
        "::1 localhost ip6-localhost\n"
        "# 10.0.0.9 commented.example\n"
        "203.0.113.80    deb.debian.org pypi.org  # the mirror\n"
        "ff02::1 ip6-allnodes\n"
        "not-an-address name\n"
        "10.1.2.3\n"
    )
    assert image.hosts_entries(hosts) == ["deb.debian.org:203.0.113.80", "pypi.org:203.0.113.80"]
    assert image.hosts_entries(tmp_path / "missing") == []


def test_no_docker_command_is_said_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run here
    assert image.run() == 2
    assert "no docker command" in capsys.readouterr().err


def test_no_daemon_at_docker_host_is_said_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("docker") is None:
        pytest.skip("the docker command is not installed")
    host = f"unix://{tmp_path / 'no-daemon.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    assert image.run() == 2
    assert f"no Docker daemon answers at {host}" in capsys.readouterr().err
