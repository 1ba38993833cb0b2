"""SQLAlchemy tables of the expression history.

The migrations in ``fedcore/store/migrations/versions`` create these tables.
A change here needs a new migration, and ``tests/test_store_migrations.py``
fails until the two agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from fedcore.constants import CLASSES

CODE_MAX_LENGTH = 32
DISPLAY_NAME_MAX_LENGTH = 100
SHA256_HEX_LENGTH = 64
MODEL_FIELD_MAX_LENGTH = 100
CAPTURE_SOURCES: tuple[str, ...] = ("upload", "camera", "cli")
AUDIT_ACTIONS: tuple[str, ...] = (
    "person_created",
    "person_renamed",
    "person_deleted",
    "capture_saved",
    "history_exported",
)
THUMBNAIL_MEDIA_TYPES: tuple[str, ...] = ("image/png", "image/jpeg")

# Fixed constraint names, so that later migrations can address them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC.

    SQLite has no time zone type, so values are stored there as naive UTC
    text in one fixed format, which keeps string comparison in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; pass a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Person(Base):
    """A person whose expressions are tracked, known only by a pseudonymous code."""

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_MAX_LENGTH), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX_LENGTH))
    created_at: Mapped[datetime]

    # The database deletes the rows below through ON DELETE CASCADE
    # (passive_deletes), so a person with thousands of captures is deleted
    # with one statement instead of loading every row first.
    captures: Mapped[list[Capture]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True
    )


class Capture(Base):
    """One saved photo of a person. The image itself is never stored, only its SHA-256."""

    __tablename__ = "capture"
    __table_args__ = (
        UniqueConstraint("person_id", "image_sha256"),
        Index(None, "person_id", "captured_at"),
        CheckConstraint(f"source IN ({_sql_list(CAPTURE_SOURCES)})", name="source"),
        CheckConstraint("image_width > 0 AND image_height > 0", name="image_size"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    captured_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))
    image_sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    image_width: Mapped[int]
    image_height: Mapped[int]
    model_name: Mapped[str] = mapped_column(String(MODEL_FIELD_MAX_LENGTH))
    model_version: Mapped[str] = mapped_column(String(MODEL_FIELD_MAX_LENGTH))
    saved_at: Mapped[datetime]

    person: Mapped[Person] = relationship(back_populates="captures")
    observations: Mapped[list[FaceObservation]] = relationship(
        back_populates="capture", cascade="all, delete-orphan", passive_deletes=True
    )


class FaceObservation(Base):
    """The expression estimate of one face in a capture."""

    __tablename__ = "face_observation"
    __table_args__ = (
        UniqueConstraint("capture_id", "face_number"),
        CheckConstraint("face_number >= 1", name="face_number"),
        CheckConstraint(f"top_expression IN ({_sql_list(CLASSES)})", name="top_expression"),
        *(CheckConstraint(f"{name} >= 0 AND {name} <= 1", name=f"{name}_range") for name in CLASSES),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_id: Mapped[int] = mapped_column(ForeignKey("capture.id", ondelete="CASCADE"))
    face_number: Mapped[int]
    box_x: Mapped[int]
    box_y: Mapped[int]
    box_w: Mapped[int]
    box_h: Mapped[int]
    confidence: Mapped[float] = mapped_column(Float)
    keypoints: Mapped[dict[str, Any]]
    # One column per entry of CLASSES, in that order; test_store_models checks the match.
    neutral: Mapped[float] = mapped_column(Float)
    happy: Mapped[float] = mapped_column(Float)
    sad: Mapped[float] = mapped_column(Float)
    surprise: Mapped[float] = mapped_column(Float)
    fear: Mapped[float] = mapped_column(Float)
    disgust: Mapped[float] = mapped_column(Float)
    anger: Mapped[float] = mapped_column(Float)
    contempt: Mapped[float] = mapped_column(Float)
    top_expression: Mapped[str] = mapped_column(String(16))
    uncertain: Mapped[bool] = mapped_column(Boolean)

    capture: Mapped[Capture] = relationship(back_populates="observations")
    thumbnail: Mapped[FaceThumbnail | None] = relationship(
        back_populates="observation", cascade="all, delete-orphan", passive_deletes=True
    )


class FaceThumbnail(Base):
    """A small crop of one face, kept in its own table so history queries never read image bytes."""

    __tablename__ = "face_thumbnail"
    __table_args__ = (CheckConstraint(f"media_type IN ({_sql_list(THUMBNAIL_MEDIA_TYPES)})", name="media_type"),)

    observation_id: Mapped[int] = mapped_column(
        ForeignKey("face_observation.id", ondelete="CASCADE"), primary_key=True
    )
    media_type: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary)

    observation: Mapped[FaceObservation] = relationship(back_populates="thumbnail")


class AuditEvent(Base):
    """A record of one change or export, by person code. It never contains image data or display names."""

    __tablename__ = "audit_event"
    __table_args__ = (
        CheckConstraint(f"action IN ({_sql_list(AUDIT_ACTIONS)})", name="action"),
        Index(None, "person_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(32))
    # A plain code rather than a foreign key, so the event outlives the person it names.
    person_code: Mapped[str | None] = mapped_column(String(CODE_MAX_LENGTH))
    counts: Mapped[dict[str, Any]]


PROBABILITY_COLUMNS = tuple(FaceObservation.__table__.c[name] for name in CLASSES)
