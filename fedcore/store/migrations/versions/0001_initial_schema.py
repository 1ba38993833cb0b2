"""Create the person, capture, face observation, thumbnail and audit tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model constants as of this revision. A migration must
# keep creating the same schema when the models change later.
_CLASS_COLUMNS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
_SOURCES = "'upload', 'camera', 'cli'"
_ACTIONS = "'person_created', 'person_renamed', 'person_deleted', 'capture_saved', 'history_exported'"
_MEDIA_TYPES = "'image/png', 'image/jpeg'"


def _utc_datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint("code", name=op.f("uq_person_code")),
    )

    op.create_table(
        "capture",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("captured_at", _utc_datetime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("image_width", sa.Integer(), nullable=False),
        sa.Column("image_height", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("saved_at", _utc_datetime(), nullable=False),
        sa.CheckConstraint(f"source IN ({_SOURCES})", name=op.f("ck_capture_source")),
        sa.CheckConstraint("image_width > 0 AND image_height > 0", name=op.f("ck_capture_image_size")),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_capture_person_id_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture")),
        sa.UniqueConstraint("person_id", "image_sha256", name=op.f("uq_capture_person_id_image_sha256")),
    )
    op.create_index(op.f("ix_capture_person_id_captured_at"), "capture", ["person_id", "captured_at"])

    op.create_table(
        "face_observation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.Integer(), nullable=False),
        sa.Column("face_number", sa.Integer(), nullable=False),
        sa.Column("box_x", sa.Integer(), nullable=False),
        sa.Column("box_y", sa.Integer(), nullable=False),
        sa.Column("box_w", sa.Integer(), nullable=False),
        sa.Column("box_h", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("keypoints", sa.JSON(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in _CLASS_COLUMNS),
        sa.Column("top_expression", sa.String(length=16), nullable=False),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.CheckConstraint("face_number >= 1", name=op.f("ck_face_observation_face_number")),
        sa.CheckConstraint(
            "top_expression IN ({})".format(", ".join(f"'{name}'" for name in _CLASS_COLUMNS)),
            name=op.f("ck_face_observation_top_expression"),
        ),
        *(
            sa.CheckConstraint(f"{name} >= 0 AND {name} <= 1", name=op.f(f"ck_face_observation_{name}_range"))
            for name in _CLASS_COLUMNS
        ),
        sa.ForeignKeyConstraint(
            ["capture_id"], ["capture.id"], name=op.f("fk_face_observation_capture_id_capture"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_observation")),
        sa.UniqueConstraint("capture_id", "face_number", name=op.f("uq_face_observation_capture_id_face_number")),
    )

    op.create_table(
        "face_thumbnail",
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint(f"media_type IN ({_MEDIA_TYPES})", name=op.f("ck_face_thumbnail_media_type")),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["face_observation.id"],
            name=op.f("fk_face_thumbnail_observation_id_face_observation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("observation_id", name=op.f("pk_face_thumbnail")),
    )

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", _utc_datetime(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("person_code", sa.String(length=32), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.CheckConstraint(f"action IN ({_ACTIONS})", name=op.f("ck_audit_event_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_person_code"), "audit_event", ["person_code"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_event_person_code"), table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_table("face_thumbnail")
    op.drop_table("face_observation")
    op.drop_index(op.f("ix_capture_person_id_captured_at"), table_name="capture")
    op.drop_table("capture")
    op.drop_table("person")
