"""HistoryStore: the per-person expression history, on SQLite or PostgreSQL.

Every public method runs as one unit of work in its own session, so one
HistoryStore can be shared by threads. Methods return plain frozen
dataclasses or DataFrames, never ORM objects.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fedcore.constants import CLASSES
from fedcore.errors import StoreError
from fedcore.results import FaceResult, ImageResult
from fedcore.store import models
from fedcore.store.engine import (
    READ_ONLY_OPTION,
    create_store_engine,
    display_url,
    is_locked_error,
    resolve_database_url,
    thumbnails_enabled_by_env,
    upgrade_database,
)
from fedcore.store.history import history_csv, history_frame, history_json, history_statement
from fedcore.store.records import AuditEvent, DeleteSummary, Person, SaveSummary
from fedcore.store.validation import (
    require_aware,
    select_faces,
    thumbnail_media_type,
    validate_code,
    validate_display_name,
    validate_face,
    validate_model_field,
    validate_sha256,
    validate_source,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite waits up to its busy timeout before "database is locked"; these few
# retries cover the rare cases where SQLite fails at once instead of waiting.
LOCKED_RETRY_ATTEMPTS = 5
LOCKED_RETRY_BASE_DELAY_S = 0.05
DEFAULT_AUDIT_LIMIT = 100
# A face of a new save is the same as a stored face of the capture when their boxes overlap this much.
SAME_FACE_IOU = 0.5


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _person_record(row: models.Person) -> Person:
    return Person(code=row.code, display_name=row.display_name, created_at=row.created_at)


def _not_found(code: str) -> StoreError:
    return StoreError(f"person {code!r} not found; create it with `python -m fedcore people add {code}`")


def _box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    inter_w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    inter_h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0


class HistoryStore:
    """The expression history database. Construction applies pending migrations.

    ``url`` defaults to ``$FED_DATABASE_URL``, else to the SQLite file
    ``fed-history.sqlite3`` in the data folder. ``store_thumbnails`` (or
    ``FED_STORE_THUMBNAILS=1``) makes ``save_capture`` keep the face crops it
    is given; by default they are dropped.
    """

    def __init__(self, url: str | None = None, *, store_thumbnails: bool = False) -> None:
        self.url = resolve_database_url(url)
        self.store_thumbnails = store_thumbnails or thumbnails_enabled_by_env()
        self._engine = create_store_engine(self.url)
        try:
            self.revision = upgrade_database(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self._write_sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self._engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )
        logger.debug("history store opened at %s (schema revision %s)", self.display_url, self.revision)

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # People

    def create_person(self, code: str, display_name: str | None = None) -> Person:
        code = validate_code(code)
        name = validate_display_name(display_name)

        def work(session: Session) -> Person:
            if session.scalar(select(models.Person.id).where(models.Person.code == code)) is not None:
                raise self._duplicate(code)
            row = models.Person(code=code, display_name=name, created_at=_now())
            session.add(row)
            session.flush()
            self._audit(session, "person_created", code, {})
            return _person_record(row)

        try:
            return self._run(work)
        except IntegrityError as error:
            # A concurrent create of the same code committed between our check and insert.
            raise self._duplicate(code) from error

    def rename_person(self, code: str, display_name: str | None) -> Person:
        """Set or, with None or blank text, clear the display name."""
        code = validate_code(code)
        name = validate_display_name(display_name)

        def work(session: Session) -> Person:
            row = self._person_row(session, code)
            row.display_name = name
            self._audit(session, "person_renamed", code, {})
            return _person_record(row)

        return self._run(work)

    def get_person(self, code: str) -> Person | None:
        code = validate_code(code)

        def work(session: Session) -> Person | None:
            row = session.scalar(select(models.Person).where(models.Person.code == code))
            return None if row is None else _person_record(row)

        return self._run(work, read_only=True)

    def list_people(self) -> list[Person]:
        def work(session: Session) -> list[Person]:
            rows = session.scalars(select(models.Person).order_by(models.Person.code))
            return [_person_record(row) for row in rows]

        return self._run(work, read_only=True)

    def delete_person(self, code: str) -> DeleteSummary:
        """Delete a person with every capture, observation and thumbnail, in one transaction.

        The caller is responsible for asking the user to confirm.
        """
        code = validate_code(code)

        def work(session: Session) -> DeleteSummary:
            row = self._person_row(session, code)
            capture_ids = select(models.Capture.id).where(models.Capture.person_id == row.id)
            observation_ids = select(models.FaceObservation.id).where(
                models.FaceObservation.capture_id.in_(capture_ids)
            )
            summary = DeleteSummary(
                person_code=code,
                captures=self._count(session, models.Capture.__table__, models.Capture.person_id == row.id),
                observations=self._count(
                    session, models.FaceObservation.__table__, models.FaceObservation.capture_id.in_(capture_ids)
                ),
                thumbnails=self._count(
                    session, models.FaceThumbnail.__table__, models.FaceThumbnail.observation_id.in_(observation_ids)
                ),
            )
            # ON DELETE CASCADE removes the captures, observations and thumbnails.
            session.delete(row)
            self._audit(
                session,
                "person_deleted",
                code,
                {"captures": summary.captures, "observations": summary.observations, "thumbnails": summary.thumbnails},
            )
            return summary

        summary = self._run(work)
        logger.info(
            "deleted person %s with %d captures and %d observations", code, summary.captures, summary.observations
        )
        return summary

    # Captures

    def save_capture(
        self,
        code: str,
        result: ImageResult,
        *,
        image_sha256: str,
        source: str,
        captured_at: datetime | None = None,
        face_numbers: Sequence[int] | None = None,
        thumbnails: Mapping[int, bytes] | None = None,
    ) -> SaveSummary:
        """Save the classified faces of ``result`` as one capture of a person.

        Saving is idempotent: a person has at most one capture per image
        SHA-256, a repeated save adds only faces not saved before and
        otherwise reports ``already_saved``. Unclassified faces are skipped and
        listed in the summary. Invalid values raise StoreError and store nothing.

        Faces are matched by box, not by number, because numbers change with
        the detection settings: a face whose box overlaps a stored face of the
        capture with IoU >= 0.5 counts as already saved. A new face whose number
        a stored face already uses is stored under the next free number.
        """
        code = validate_code(code)
        sha256 = validate_sha256(image_sha256)
        source = validate_source(source)
        captured_at = _now() if captured_at is None else require_aware(captured_at, name="captured_at")
        if result.error is not None:
            raise StoreError(
                f"cannot save {result.source or 'the image'}: it failed to load ({result.error.kind}: "
                f"{result.error.message})"
            )
        if result.width <= 0 or result.height <= 0:
            raise StoreError(f"invalid image size {result.width}x{result.height}; expected positive width and height")
        validate_model_field(result.model_name, name="model name")
        validate_model_field(result.model_version, name="model version")

        selected = select_faces(result.faces, face_numbers)
        for face in selected:
            validate_face(face)
        classified = [face for face in selected if face.probabilities is not None]
        skipped = tuple(face.number for face in selected if face.probabilities is None)
        if skipped:
            logger.info("skipping unclassified face(s) %s of a capture of %s", skipped, code)
        thumbnail_rows = self._thumbnail_media_types(result.faces, classified, thumbnails)

        if not classified:
            return SaveSummary(
                person_code=code,
                image_sha256=sha256,
                capture_id=None,
                capture_created=False,
                faces_added=(),
                faces_already_saved=(),
                faces_skipped_unclassified=skipped,
            )

        def work(session: Session) -> SaveSummary:
            person_id = self._person_row(session, code).id
            capture_id, created = self._insert_capture(session, person_id, sha256, source, captured_at, result)
            added, already_saved, stored_numbers = self._insert_observations(session, capture_id, classified)
            thumbnails_added = self._insert_thumbnails(
                session,
                capture_id,
                {stored_numbers[number]: media for number, media in thumbnail_rows.items() if number in stored_numbers},
                {stored_numbers[number]: data for number, data in (thumbnails or {}).items() if number in stored_numbers},
            )
            summary = SaveSummary(
                person_code=code,
                image_sha256=sha256,
                capture_id=capture_id,
                capture_created=created,
                faces_added=added,
                faces_already_saved=already_saved,
                faces_skipped_unclassified=skipped,
                thumbnails_added=thumbnails_added,
            )
            if summary.changed:
                self._audit(
                    session,
                    "capture_saved",
                    code,
                    {
                        "capture_id": capture_id,
                        "faces_added": len(added),
                        "faces_skipped": len(skipped),
                        "thumbnails_added": thumbnails_added,
                    },
                )
            return summary

        return self._run(work)

    def get_thumbnail(self, capture_id: int, face_number: int) -> bytes | None:
        def work(session: Session) -> bytes | None:
            return session.scalar(
                select(models.FaceThumbnail.data)
                .join(models.FaceObservation)
                .where(
                    models.FaceObservation.capture_id == capture_id,
                    models.FaceObservation.face_number == face_number,
                )
            )

        return self._run(work, read_only=True)

    # History

    def history(self, code: str, *, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Return one row per face observation, oldest first; ``since`` inclusive, ``until`` exclusive."""
        code = validate_code(code)
        since, until = self._time_range(since, until)

        def work(session: Session) -> pd.DataFrame:
            person_id = self._person_row(session, code).id
            return self._history_frame(session, person_id, since, until)

        return self._run(work, read_only=True)

    def export_csv(self, code: str, *, since: datetime | None = None, until: datetime | None = None) -> str:
        """Return the history as CSV text, with ISO 8601 UTC times, and log the export in the audit table."""
        return self._export(code, since, until, file_format="csv")

    def export_json(self, code: str, *, since: datetime | None = None, until: datetime | None = None) -> str:
        """Return the person and their history as JSON text and log the export in the audit table."""
        return self._export(code, since, until, file_format="json")

    def audit_events(self, *, code: str | None = None, limit: int = DEFAULT_AUDIT_LIMIT) -> list[AuditEvent]:
        """Return audit events, newest first, of one person code or of everyone."""
        if code is not None:
            code = validate_code(code)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StoreError(f"invalid audit event limit {limit!r}; expected a whole number of at least 1")

        def work(session: Session) -> list[AuditEvent]:
            statement = select(models.AuditEvent).order_by(models.AuditEvent.id.desc()).limit(limit)
            if code is not None:
                statement = statement.where(models.AuditEvent.person_code == code)
            return [
                AuditEvent(
                    occurred_at=row.occurred_at,
                    action=row.action,
                    person_code=row.person_code,
                    counts=dict(row.counts),
                )
                for row in session.scalars(statement)
            ]

        return self._run(work, read_only=True)

    # Internals

    def _run(self, work: Callable[[Session], T], *, read_only: bool = False) -> T:
        """Run ``work`` in one transaction, retrying briefly when SQLite reports a lock."""
        sessions = self._read_sessions if read_only else self._write_sessions
        attempt = 1
        while True:
            try:
                with sessions.begin() as session:
                    return work(session)
            except OperationalError as error:
                if not is_locked_error(error):
                    raise StoreError(f"database error on {self.display_url}: {error.orig}") from error
                if attempt >= LOCKED_RETRY_ATTEMPTS:
                    raise StoreError(
                        f"database {self.display_url} stayed locked by another writer after {attempt} attempts; "
                        "try again, and check that no other program keeps a transaction open"
                    ) from error
                delay = LOCKED_RETRY_BASE_DELAY_S * 2 ** (attempt - 1) * random.uniform(1.0, 2.0)
                logger.warning(
                    "database is locked (attempt %d of %d); retrying in %.2f s", attempt, LOCKED_RETRY_ATTEMPTS, delay
                )
                time.sleep(delay)
                attempt += 1

    def _insert_statement(self, table: Table) -> Any:
        """Return a dialect INSERT that supports ON CONFLICT DO NOTHING."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @staticmethod
    def _person_row(session: Session, code: str) -> models.Person:
        row = session.scalar(select(models.Person).where(models.Person.code == code))
        if row is None:
            raise _not_found(code)
        return row

    @staticmethod
    def _duplicate(code: str) -> StoreError:
        return StoreError(f"person {code!r} already exists; choose another code or use the existing person")

    @staticmethod
    def _count(session: Session, table: Table, condition: Any) -> int:
        return session.scalar(select(func.count()).select_from(table).where(condition)) or 0

    @staticmethod
    def _audit(session: Session, action: str, code: str | None, counts: dict[str, Any]) -> None:
        session.add(models.AuditEvent(occurred_at=_now(), action=action, person_code=code, counts=counts))

    @staticmethod
    def _time_range(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
        if since is not None:
            since = require_aware(since, name="since")
        if until is not None:
            until = require_aware(until, name="until")
        if since is not None and until is not None and until <= since:
            raise StoreError(
                f"empty time range: until {until.isoformat()} is not after since {since.isoformat()}; swap them"
            )
        return since, until

    @staticmethod
    def _history_frame(
        session: Session, person_id: int, since: datetime | None, until: datetime | None
    ) -> pd.DataFrame:
        # A Core execution on the session's connection skips the ORM row processing.
        result = session.connection().execute(history_statement(person_id, since=since, until=until))
        return history_frame(tuple(result.keys()), result.all())

    def _export(self, code: str, since: datetime | None, until: datetime | None, *, file_format: str) -> str:
        code = validate_code(code)
        since, until = self._time_range(since, until)

        # One write transaction, so the audit event exists exactly when the export was produced.
        def work(session: Session) -> str:
            row = self._person_row(session, code)
            frame = self._history_frame(session, row.id, since, until)
            self._audit(
                session,
                "history_exported",
                code,
                {"observations": len(frame), "captures": int(frame["capture_id"].nunique())},
            )
            if file_format == "csv":
                return history_csv(code, frame)
            return history_json(_person_record(row), frame, exported_at=_now())

        return self._run(work)

    def _insert_capture(
        self,
        session: Session,
        person_id: int,
        sha256: str,
        source: str,
        captured_at: datetime,
        result: ImageResult,
    ) -> tuple[int, bool]:
        """Insert the capture unless the person has it already; return its id and whether it is new."""
        table = models.Capture.__table__
        statement = (
            self._insert_statement(table)
            .values(
                person_id=person_id,
                captured_at=captured_at,
                source=source,
                image_sha256=sha256,
                image_width=result.width,
                image_height=result.height,
                model_name=result.model_name,
                model_version=result.model_version,
                saved_at=_now(),
            )
            .on_conflict_do_nothing(index_elements=["person_id", "image_sha256"])
            .returning(table.c.id)
        )
        capture_id = session.execute(statement).scalar_one_or_none()
        if capture_id is not None:
            return capture_id, True
        # NOTE: a repeated save keeps the first captured_at, source and model
        # version of the capture, even when the new result comes from another model.
        existing = session.execute(
            select(table.c.id).where(table.c.person_id == person_id, table.c.image_sha256 == sha256)
        ).scalar_one()
        return existing, False

    def _insert_observations(
        self, session: Session, capture_id: int, faces: list[FaceResult]
    ) -> tuple[tuple[int, ...], tuple[int, ...], dict[int, int]]:
        """Insert the faces not saved before.

        Returns the result's numbers of the added faces and of the faces already
        saved, and for both the face number each has in the database.
        """
        # Lock the capture row (PostgreSQL; SQLite's write transaction is already
        # exclusive), so concurrent saves of one capture match against each other's faces.
        session.execute(select(models.Capture.id).where(models.Capture.id == capture_id).with_for_update())
        table = models.FaceObservation.__table__
        stored = session.execute(
            select(table.c.face_number, table.c.box_x, table.c.box_y, table.c.box_w, table.c.box_h).where(
                table.c.capture_id == capture_id
            )
        ).all()
        stored_numbers: dict[int, int] = {}
        fresh = []
        for face in faces:
            overlaps = [(_box_iou(face.box, tuple(row[1:])), row.face_number) for row in stored]
            best_iou, best_number = max(overlaps, default=(0.0, 0))
            if best_iou >= SAME_FACE_IOU:
                stored_numbers[face.number] = best_number
            else:
                fresh.append(face)

        used_numbers = {row.face_number for row in stored}
        next_free = max(used_numbers | {face.number for face in faces}, default=0) + 1
        values = []
        for face in fresh:
            number = face.number
            if number in used_numbers:
                number, next_free = next_free, next_free + 1
            used_numbers.add(number)
            stored_numbers[face.number] = number
            probabilities = face.probabilities or ()
            x, y, width, height = face.box
            values.append(
                {
                    "capture_id": capture_id,
                    "face_number": number,
                    "box_x": x,
                    "box_y": y,
                    "box_w": width,
                    "box_h": height,
                    "confidence": float(face.confidence),
                    "keypoints": face.detection.keypoints_json(),
                    **{name: float(value) for name, value in zip(CLASSES, probabilities)},
                    "top_expression": face.label,
                    "uncertain": bool(face.uncertain),
                }
            )
        inserted: set[int] = set()
        if values:
            statement = (
                self._insert_statement(table)
                .values(values)
                .on_conflict_do_nothing(index_elements=["capture_id", "face_number"])
                .returning(table.c.face_number)
            )
            inserted = set(session.execute(statement).scalars())
        # The lock above prevents number conflicts. If a row is skipped anyway, its face counts as already saved.
        added = tuple(sorted(face.number for face in fresh if stored_numbers[face.number] in inserted))
        already_saved = tuple(sorted(face.number for face in faces if face.number not in added))
        return added, already_saved, stored_numbers

    def _thumbnail_media_types(
        self,
        all_faces: Sequence[FaceResult],
        saved_faces: list[FaceResult],
        thumbnails: Mapping[int, bytes] | None,
    ) -> dict[int, str]:
        """Validate the thumbnails of the faces being saved and return their media types by face number."""
        if not thumbnails:
            return {}
        if not self.store_thumbnails:
            logger.debug("dropping %d thumbnail(s) because thumbnail storage is off", len(thumbnails))
            return {}
        unknown = sorted(set(thumbnails) - {face.number for face in all_faces})
        if unknown:
            raise StoreError(
                f"thumbnails given for face number(s) {unknown} that the result does not contain; "
                "key thumbnails by FaceResult.number"
            )
        saved_numbers = {face.number for face in saved_faces}
        return {
            number: thumbnail_media_type(number, data) for number, data in thumbnails.items() if number in saved_numbers
        }

    def _insert_thumbnails(
        self, session: Session, capture_id: int, media_types: dict[int, str], thumbnails: Mapping[int, bytes]
    ) -> int:
        if not media_types:
            return 0
        observations = session.execute(
            select(models.FaceObservation.face_number, models.FaceObservation.id).where(
                models.FaceObservation.capture_id == capture_id,
                models.FaceObservation.face_number.in_(media_types),
            )
        ).all()
        table = models.FaceThumbnail.__table__
        statement = (
            self._insert_statement(table)
            .values(
                [
                    {
                        "observation_id": observation_id,
                        "media_type": media_types[number],
                        "data": bytes(thumbnails[number]),
                    }
                    for number, observation_id in observations
                ]
            )
            .on_conflict_do_nothing(index_elements=["observation_id"])
            .returning(table.c.observation_id)
        )
        return len(session.execute(statement).all())

