"""Alembic migrations of the history store on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from fedcore.errors import StoreError
from fedcore.store import HistoryStore
from fedcore.store.engine import alembic_config, create_store_engine, resolve_database_url, upgrade_database
from fedcore.store.models import Base
from tests.test_store_support import STORE_TABLES, image_sha, make_result, raw_rows
from tests.test_store_support import database_url, postgres_url  # noqa: F401  (pytest fixtures)


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()  # type: ignore[return-value]


def test_upgrade_from_empty_creates_tables(database_url: str) -> None:
    with HistoryStore(database_url) as store:
        revision = store.revision

    engine = create_store_engine(resolve_database_url(database_url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert revision == head_revision()
    assert set(STORE_TABLES) <= tables
    assert "alembic_version" in tables
    assert raw_rows(database_url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_upgrade_rerun_keeps_data(database_url: str) -> None:
    with HistoryStore(database_url) as store:
        store.create_person("P-1", "Ada")
        store.save_capture("P-1", make_result(), image_sha256=image_sha(1), source="cli")

    engine = create_store_engine(resolve_database_url(database_url))
    try:
        second_revision = upgrade_database(engine)
    finally:
        engine.dispose()
    with HistoryStore(database_url) as reopened:
        history = reopened.history("P-1")
        person = reopened.get_person("P-1")

    assert second_revision == head_revision()
    assert len(history) == 2
    assert person is not None
    assert person.display_name == "Ada"


def test_migrations_match_models(database_url: str) -> None:
    HistoryStore(database_url).close()

    engine = create_store_engine(resolve_database_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_then_upgrade_round_trip(database_url: str) -> None:
    HistoryStore(database_url).close()
    engine = create_store_engine(resolve_database_url(database_url))
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        tables_after_downgrade = set(inspect(engine).get_table_names())
        revision = upgrade_database(engine)
    finally:
        engine.dispose()

    assert not set(STORE_TABLES) & tables_after_downgrade
    assert revision == head_revision()


def test_upgrade_from_other_working_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    with HistoryStore(f"sqlite:///{tmp_path / 'cwd.sqlite3'}") as store:
        assert store.revision == head_revision()


def test_alembic_offline_sql_generated(tmp_path) -> None:
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'offline.sqlite3'}")
    config.output_buffer = io.StringIO()

    command.upgrade(config, "head", sql=True)
    script = config.output_buffer.getvalue()

    assert "CREATE TABLE person" in script
    assert "CREATE TABLE face_observation" in script
    assert not (tmp_path / "offline.sqlite3").exists()


def test_alembic_command_without_connection(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'standalone.sqlite3'}"
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", url)

    command.upgrade(config, "head")

    assert raw_rows(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_unknown_revision_reported(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    HistoryStore(url).close()
    engine = create_store_engine(resolve_database_url(url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(StoreError, match=r"from schema revision 9999: .*written by a newer FED"):
        HistoryStore(url)
