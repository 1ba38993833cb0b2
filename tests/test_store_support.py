"""Builders and database fixtures shared by the history store tests (this module contains no tests).

PostgreSQL cases read ``FED_TEST_POSTGRES_URL`` and skip when it is unset;
``.ci/postgres.sh`` starts a local server and sets it. Each PostgreSQL case
runs in a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fedcore.constants import CLASSES
from fedcore.results import KEYPOINT_NAMES, DetectedFace, FaceResult, ImageResult
from fedcore.store import HistoryStore

POSTGRES_URL_ENV = "FED_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")
STORE_TABLES = ("person", "capture", "face_observation", "face_thumbnail", "audit_event")
UTC = timezone.utc
MODEL_NAME = "fed-vgg16-test"
MODEL_VERSION = "2024.05"


def probability_vector(top_class: str, top: float) -> tuple[float, ...]:
    """Return probabilities with ``top`` on one class and the rest shared equally by the others."""
    rest = (1.0 - top) / (len(CLASSES) - 1)
    return tuple(top if name == top_class else rest for name in CLASSES)


def make_face(
    number: int,
    *,
    top_class: str = "happy",
    top: float = 0.72,
    probabilities: tuple[float, ...] | None | str = "default",
    uncertain: bool = False,
) -> FaceResult:
    """Build a face at a box that depends on its number; ``probabilities=None`` makes it unclassified."""
    if probabilities == "default":
        probabilities = probability_vector(top_class, top)
    box = (40 * number, 30 + number, 32 + number, 36 + number)
    keypoints = tuple((box[0] + 5.0 + index, box[1] + 9.5 + index) for index in range(len(KEYPOINT_NAMES)))
    detection = DetectedFace(box=box, confidence=0.9 + number / 1000, keypoints=keypoints)
    return FaceResult(
        number=number,
        detection=detection,
        probabilities=probabilities,  # type: ignore[arg-type]
        uncertain=uncertain,
    )


def make_result(faces: tuple[FaceResult, ...] | None = None, *, face_count: int = 2) -> ImageResult:
    if faces is None:
        faces = tuple(make_face(number) for number in range(1, face_count + 1))
    return ImageResult(
        source="photo.jpg", width=640, height=480, faces=faces, model_name=MODEL_NAME, model_version=MODEL_VERSION
    )


def image_sha(label: object) -> str:
    return hashlib.sha256(f"image-{label}".encode()).hexdigest()


def at(hour: int, minute: int = 0, *, day: int = 1) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=UTC)


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set; source .ci/postgres.sh to start a local PostgreSQL")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Yield a URL whose search_path is a fresh, empty schema, and drop the schema afterwards."""
    base = make_url(postgres_base_url()).set(drivername="postgresql+psycopg")
    schema = f"fed_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh database on each backend: a SQLite file in tmp_path, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str) -> Iterator[HistoryStore]:
    history_store = HistoryStore(database_url)
    yield history_store
    history_store.close()


def table_counts(url: str) -> dict[str, int]:
    """Count the rows of every store table through a connection of its own."""
    return {table: raw_rows(url, f"SELECT count(*) FROM {table}")[0][0] for table in STORE_TABLES}


def raw_rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query))]
    finally:
        engine.dispose()

