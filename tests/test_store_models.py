"""Table definitions of the history store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from fedcore.constants import CLASSES
from fedcore.store.models import PROBABILITY_COLUMNS, Capture, FaceObservation, FaceThumbnail, UTCDateTime


def test_probability_columns_follow_classes() -> None:
    assert tuple(column.name for column in PROBABILITY_COLUMNS) == CLASSES
    assert all(name in FaceObservation.__table__.c for name in CLASSES)


def test_capture_unique_per_person_image() -> None:
    unique_sets = {
        tuple(column.name for column in constraint.columns)
        for constraint in Capture.__table__.constraints
        if constraint.__class__.__name__ == "UniqueConstraint"
    }

    assert ("person_id", "image_sha256") in unique_sets


def test_capture_indexed_by_person_time() -> None:
    indexed = {tuple(column.name for column in index.columns) for index in Capture.__table__.indexes}

    assert ("person_id", "captured_at") in indexed


def test_foreign_keys_cascade_on_delete() -> None:
    for table in (Capture.__table__, FaceObservation.__table__, FaceThumbnail.__table__):
        assert [key.ondelete for key in table.foreign_keys] == ["CASCADE"]


def test_utc_datetime_converts_offset() -> None:
    moment = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))

    stored_sqlite = UTCDateTime().process_bind_param(moment, sqlite.dialect())
    stored_postgresql = UTCDateTime().process_bind_param(moment, postgresql.dialect())

    assert stored_sqlite == datetime(2024, 5, 1, 10)
    assert stored_postgresql == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)


def test_utc_datetime_naive_rejected() -> None:
    with pytest.raises(ValueError, match=r"pass a timezone-aware datetime"):
        UTCDateTime().process_bind_param(datetime(2024, 5, 1, 12), sqlite.dialect())


def test_utc_datetime_read_as_utc() -> None:
    loaded = UTCDateTime().process_result_value(datetime(2024, 5, 1, 10), sqlite.dialect())

    assert loaded == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert loaded.tzinfo is timezone.utc  # type: ignore[union-attr]
