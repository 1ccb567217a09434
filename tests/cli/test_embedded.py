"""The embedded servers' system user (service/cli/embedded.system_user)."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import threading
from collections.abc import Iterator

import pytest

from service.cli.embedded import system_user

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating a system user needs root (the embedded servers' case)"
)


@pytest.fixture
def name() -> Iterator[str]:
    name = f"ndtest{secrets.token_hex(4)}"
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)


def test_an_existing_user_is_returned_as_it_is() -> None:
    assert system_user("root").pw_uid == 0


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
