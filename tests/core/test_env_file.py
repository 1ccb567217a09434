"""service.core.settings: a .env file fills in what the environment does not set; ENV_FILE
names another file, or none (what the tests use, so a developer's .env cannot reach them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.settings import ENV_FILE_VARIABLE, Settings

DEFAULT_POOL = Settings.model_fields["db_pool_size"].default


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("LOG_LEVEL", "DB_POOL_SIZE", ENV_FILE_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("LOG_LEVEL=DEBUG\nDB_POOL_SIZE=7\n")
    (tmp_path / "other.env").write_text("LOG_LEVEL=ERROR\n")
    return tmp_path


def test_dotenv_in_the_working_directory_is_read_and_the_environment_wins(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    settings = Settings()
    assert (settings.log_level, settings.db_pool_size) == ("DEBUG", 3)


def test_env_file_names_another_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FILE_VARIABLE, "other.env")
    settings = Settings()
    assert (settings.log_level, settings.db_pool_size) == ("ERROR", DEFAULT_POOL)


def test_an_empty_env_file_reads_no_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    settings = Settings()
    assert (settings.log_level, settings.db_pool_size) == ("INFO", DEFAULT_POOL)


def test_a_file_chosen_by_the_caller_wins_over_env_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_FILE_VARIABLE, "other.env")
    assert Settings(_env_file=None).log_level == "INFO"
    assert Settings(_env_file=workdir / ".env").log_level == "DEBUG"
