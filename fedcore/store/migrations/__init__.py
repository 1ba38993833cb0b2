"""Alembic migrations of the history store, run by ``fedcore.store.engine.upgrade_database``."""
