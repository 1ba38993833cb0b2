"""Database URL resolution, SQLite connection settings and lock handling of the history store."""

from __future__ import annotations

import logging
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from fedcore.errors import StoreError
from fedcore.store import HistoryStore
from fedcore.store import engine as store_engine
from fedcore.store.engine import create_store_engine, resolve_database_url


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("FED_DATABASE_URL", "FED_DATA_DIR", "FED_STORE_THUMBNAILS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolve_url_postgresql_uses_psycopg() -> None:
    url = resolve_database_url("postgresql://fed:secret@127.0.0.1:5432/fed")

    assert url.drivername == "postgresql+psycopg"
    assert url.password == "secret"
    assert url.database == "fed"


def test_resolve_url_postgres_alias_accepted() -> None:
    assert resolve_database_url("postgres://fed@db/fed").drivername == "postgresql+psycopg"


def test_resolve_url_other_driver_rejected() -> None:
    with pytest.raises(StoreError, match=r"unsupported PostgreSQL driver in postgresql\+asyncpg://db/fed"):
        resolve_database_url("postgresql+asyncpg://db/fed")


def test_resolve_url_unsupported_backend_rejected() -> None:
    with pytest.raises(StoreError, match=r"unsupported database 'mysql' in mysql://fed:\*\*\*@db/fed"):
        resolve_database_url("mysql://fed:secret@db/fed")


def test_resolve_url_memory_sqlite_rejected() -> None:
    with pytest.raises(StoreError, match=r"in-memory SQLite .* is not supported"):
        resolve_database_url("sqlite://")


def test_resolve_url_garbage_rejected() -> None:
    with pytest.raises(StoreError, match=r"invalid database URL 'not a url'"):
        resolve_database_url("not a url")


def test_resolve_url_environment_variable_used(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_environment.setenv("FED_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")

    assert resolve_database_url(None).database == str(tmp_path / "env.sqlite3")


def test_default_url_in_data_dir_env(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "fed-data"
    clean_environment.setenv("FED_DATA_DIR", str(data_dir))

    url = resolve_database_url()

    assert url.drivername == "sqlite+pysqlite"
    assert url.database == str(data_dir / "fed-history.sqlite3")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_default_url_in_working_directory(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_environment.chdir(tmp_path)

    with HistoryStore() as store:
        store.create_person("P-1")

    database = tmp_path / "data" / "fed-history.sqlite3"
    assert database.is_file()
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_default_data_dir_existing_mode_kept(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "shared-data"
    data_dir.mkdir(mode=0o750)
    data_dir.chmod(0o750)
    clean_environment.setenv("FED_DATA_DIR", str(data_dir))

    resolve_database_url()

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o750


def test_sqlite_connection_pragmas_set(tmp_path: Path) -> None:
    engine = create_store_engine(resolve_database_url(f"sqlite:///{tmp_path / 'pragmas.sqlite3'}"))
    try:
        with engine.connect() as connection:
            journal_mode = connection.execute(text("PRAGMA journal_mode")).scalar_one()
            foreign_keys = connection.execute(text("PRAGMA foreign_keys")).scalar_one()
            busy_timeout = connection.execute(text("PRAGMA busy_timeout")).scalar_one()
    finally:
        engine.dispose()

    assert journal_mode == "wal"
    assert foreign_keys == 1
    assert busy_timeout == 30_000


def test_sqlite_write_transaction_locks_immediately(tmp_path: Path) -> None:
    path = tmp_path / "locks.sqlite3"
    engine = create_store_engine(resolve_database_url(f"sqlite:///{path}"))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
        with engine.execution_options(fed_read_only=True).begin() as connection:
            connection.execute(text("SELECT 1"))
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_sqlite_locked_write_retried_then_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A short busy timeout makes SQLite report the lock quickly, so the retry loop runs.
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "retry.sqlite3"
    store = HistoryStore(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.4, holder.execute, args=("ROLLBACK",))
    release.start()
    try:
        with caplog.at_level(logging.WARNING, logger="fedcore.store"):
            person = store.create_person("P-1")
    finally:
        release.join()
        holder.close()
        store.close()

    assert person.code == "P-1"
    assert any("database is locked (attempt 1 of 5)" in record.getMessage() for record in caplog.records)


def test_sqlite_lock_never_released_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_S", 0.01)
    path = tmp_path / "stuck.sqlite3"
    store = HistoryStore(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match=r"stayed locked by another writer after 5 attempts"):
            store.create_person("P-1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()

    assert time.monotonic() - started < 10


def test_unreachable_postgresql_reports_url(clean_environment: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) on localhost has no PostgreSQL server, so the connection is refused.
    expected = r"cannot open or upgrade the database postgresql\+psycopg://fed:\*\*\*@127.0.0.1:9/fed"
    with pytest.raises(StoreError, match=expected):
        HistoryStore("postgresql://fed:secret@127.0.0.1:9/fed?connect_timeout=5")
