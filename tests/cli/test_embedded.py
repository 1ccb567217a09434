"""The embedded servers' system user (service/cli/embedded.system_user) and what a failed
server tool says."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli.embedded import CommandFailed, EmbeddedPostgres, system_user

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating a system user needs root (the embedded servers' case)"
)


def test_initdb_refusing_a_directory_in_use_says_why_and_deletes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "postgres"
    data.mkdir()
    (data / "notes.txt").write_text("somebody's file")
    with pytest.raises(CommandFailed, match="exists but is not empty"):
        EmbeddedPostgres(data, durable=False).start()
    assert (data / "notes.txt").read_text() == "somebody's file"


@pytest.fixture
def name() -> Iterator[str]:
    name = f"ndtest{secrets.token_hex(4)}"
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)


@as_root
def test_an_existing_user_is_returned_as_it_is() -> None:
    assert system_user("root").pw_uid == 0


@as_root
def test_processes_creating_the_user_at_once_all_get_it(name: str) -> None:
    """The race two test processes ran into on a fresh machine: both look the user up and both
    run useradd; one useradd failed with "already exists" (or, here, each rewrote /etc/passwd
    with a uid of its own). Each caller must get the one user that exists."""
    callers = 6
    start = threading.Barrier(callers)
    found: list[int] = []
    failed: list[BaseException] = []

    def create() -> None:
        start.wait()
        try:
            found.append(system_user(name).pw_uid)
        except BaseException as error:  # reported by the assertion below
            failed.append(error)

    threads = [threading.Thread(target=create) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failed == []
    assert found == [pwd.getpwnam(name).pw_uid] * callers
