"""HistoryStore behaviour on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

from dataclasses import replace

import csv
import io
import json
import math
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from fedcore.constants import CLASSES
from fedcore.errors import StoreError
from fedcore.results import ErrorInfo, ImageResult
from fedcore.store import DeleteSummary, HistoryStore, Person, SaveSummary
from fedcore.store.history import HISTORY_COLUMNS
from tests.helpers import astronaut, astronaut_face, jpeg_bytes, png_bytes
from tests.test_store_support import (
    MODEL_NAME,
    MODEL_VERSION,
    UTC,
    at,
    image_sha,
    make_face,
    make_result,
    probability_vector,
    raw_rows,
    table_counts,
)
from tests.test_store_support import database_url, postgres_url, store  # noqa: F401  (pytest fixtures)


# People


def test_create_person_returns_record(store: HistoryStore) -> None:
    before = datetime.now(timezone.utc)
    person = store.create_person("P-0042", "Ada Lovelace")

    assert isinstance(person, Person)
    assert person.code == "P-0042"
    assert person.display_name == "Ada Lovelace"
    assert person.created_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= person.created_at <= datetime.now(timezone.utc)
    assert store.get_person("P-0042") == person


def test_list_people_sorted_by_code(store: HistoryStore) -> None:
    for code in ("P-3", "A_1", "P-10"):
        store.create_person(code)

    assert [person.code for person in store.list_people()] == ["A_1", "P-10", "P-3"]


def test_get_person_unknown_returns_none(store: HistoryStore) -> None:
    assert store.get_person("P-404") is None


def test_create_person_duplicate_rejected(store: HistoryStore) -> None:
    store.create_person("P-1")

    with pytest.raises(StoreError, match=r"person 'P-1' already exists"):
        store.create_person("P-1", "Someone Else")
    assert len(store.list_people()) == 1


@pytest.mark.parametrize("code", ["", "P 1", "P/1", "x" * 33, "Zoë", "P-1\n", "'; DROP TABLE person; --"])
def test_person_code_invalid_rejected(store: HistoryStore, code: str) -> None:
    with pytest.raises(StoreError, match=r"invalid person code .*1 to 32 characters"):
        store.create_person(code)
    assert store.list_people() == []


@pytest.mark.parametrize("code", ["P-0042", "a", "x" * 32, "A_b-9"])
def test_person_code_valid_accepted(store: HistoryStore, code: str) -> None:
    assert store.create_person(code).code == code


def test_unknown_person_message_names_fix(store: HistoryStore) -> None:
    with pytest.raises(StoreError) as caught:
        store.history("P-9")

    assert str(caught.value) == "person 'P-9' not found; create it with `python -m fedcore people add P-9`"


@pytest.mark.parametrize("name", ["Zoë Ångström", "李雷", "Ольга 👩‍⚕️", "x" * 100])
def test_display_name_unicode_round_trip(store: HistoryStore, name: str) -> None:
    store.create_person("P-1", name)

    assert store.get_person("P-1").display_name == name  # type: ignore[union-attr]
    assert store.list_people()[0].display_name == name


def test_display_name_too_long_rejected(store: HistoryStore) -> None:
    with pytest.raises(StoreError, match=r"101 characters; the maximum is 100"):
        store.create_person("P-1", "x" * 101)


def test_display_name_line_break_rejected(store: HistoryStore) -> None:
    with pytest.raises(StoreError, match=r"control characters or line breaks"):
        store.create_person("P-1", "Ada\nLovelace")


def test_rename_person_sets_and_clears(store: HistoryStore) -> None:
    store.create_person("P-1", "Old Name")

    renamed = store.rename_person("P-1", "  New Name ")
    cleared = store.rename_person("P-1", None)

    assert renamed.display_name == "New Name"
    assert cleared.display_name is None
    assert store.get_person("P-1").display_name is None  # type: ignore[union-attr]


def test_rename_person_unknown_rejected(store: HistoryStore) -> None:
    with pytest.raises(StoreError, match=r"person 'P-2' not found"):
        store.rename_person("P-2", "Name")


# Saving captures


def test_save_capture_stores_exact_values(store: HistoryStore) -> None:
    store.create_person("P-1")
    faces = (make_face(1, top_class="sad", top=0.61, uncertain=True), make_face(2, top_class="anger", top=0.83))

    summary = store.save_capture(
        "P-1", make_result(faces), image_sha256=image_sha(1).upper(), source="camera", captured_at=at(9, 30)
    )
    history = store.history("P-1")

    assert isinstance(summary, SaveSummary)
    assert summary.capture_created is True
    assert summary.faces_added == (1, 2)
    assert summary.changed is True
    assert len(history) == 2
    first = history.iloc[0]
    assert first["captured_at"] == pd.Timestamp("2024-05-01T09:30:00Z")
    assert first["capture_id"] == summary.capture_id
    assert first["source"] == "camera"
    assert first["image_sha256"] == image_sha(1)
    assert first["face_number"] == 1
    assert first["top_expression"] == "sad"
    assert first["top_probability"] == pytest.approx(0.61)
    assert bool(first["uncertain"]) is True
    assert [first[name] for name in CLASSES] == pytest.approx(list(probability_vector("sad", 0.61)))
    assert first["confidence"] == pytest.approx(0.901)
    assert (first["box_x"], first["box_y"], first["box_w"], first["box_h"]) == (40, 31, 33, 37)
    assert first["model_name"] == MODEL_NAME
    assert first["model_version"] == MODEL_VERSION
    assert history.iloc[1]["top_expression"] == "anger"
    assert bool(history.iloc[1]["uncertain"]) is False


def test_save_capture_same_image_idempotent(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")
    result = make_result(face_count=3)
    first = store.save_capture("P-1", result, image_sha256=image_sha(1), source="upload", captured_at=at(9))

    again = store.save_capture("P-1", result, image_sha256=image_sha(1), source="upload", captured_at=at(10))

    assert again.capture_id == first.capture_id
    assert again.capture_created is False
    assert again.faces_added == ()
    assert again.faces_already_saved == (1, 2, 3)
    assert again.already_saved is True
    assert "nothing added" in again.describe()
    counts = table_counts(database_url)
    assert counts["capture"] == 1
    assert counts["face_observation"] == 3
    assert [event.action for event in store.audit_events(code="P-1")].count("capture_saved") == 1
    assert store.history("P-1")["captured_at"].iloc[0] == pd.Timestamp("2024-05-01T09:00:00Z")


def test_save_capture_new_faces_added_only(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")
    result = make_result(face_count=4)
    first = store.save_capture("P-1", result, image_sha256=image_sha(1), source="upload", face_numbers=[2])

    second = store.save_capture("P-1", result, image_sha256=image_sha(1), source="upload", face_numbers=[1, 2, 4])

    assert first.faces_added == (2,)
    assert second.capture_id == first.capture_id
    assert second.faces_added == (1, 4)
    assert second.faces_already_saved == (2,)
    assert list(store.history("P-1")["face_number"]) == [1, 2, 4]
    assert table_counts(database_url)["capture"] == 1


def test_save_capture_matches_renumbered_faces(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")
    first_result = make_result(face_count=2)
    store.save_capture("P-1", first_result, image_sha256=image_sha(1), source="upload", face_numbers=[1])
    # Other settings find a new face left of the others, so every number moves up by one.
    newcomer = replace(make_face(1), detection=replace(make_face(1).detection, box=(0, 200, 30, 30)))
    shifted = tuple(replace(face, number=face.number + 1) for face in first_result.faces)
    second_result = make_result((newcomer, *shifted))

    second = store.save_capture("P-1", second_result, image_sha256=image_sha(1), source="upload", face_numbers=[1, 2])

    assert second.faces_added == (1,)
    assert second.faces_already_saved == (2,)
    history = store.history("P-1")
    # The new face's number 1 is taken, so it gets the next number free of stored and saved faces.
    assert list(history["face_number"]) == [1, 3]
    assert list(history["box_x"]) == [40, 0]
    assert table_counts(database_url)["face_observation"] == 2


def test_save_capture_moved_box_same_face(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")
    store.save_capture("P-1", make_result(face_count=1), image_sha256=image_sha(1), source="upload")
    face = make_face(1)
    x, y, width, height = face.box
    moved = replace(face, detection=replace(face.detection, box=(x + 3, y - 2, width, height + 2)))

    again = store.save_capture("P-1", make_result((moved,)), image_sha256=image_sha(1), source="upload")

    assert again.faces_added == ()
    assert again.faces_already_saved == (1,)
    assert table_counts(database_url)["face_observation"] == 1


def test_save_capture_same_image_other_person(store: HistoryStore) -> None:
    store.create_person("P-1")
    store.create_person("P-2")

    first = store.save_capture("P-1", make_result(), image_sha256=image_sha(1), source="cli")
    second = store.save_capture("P-2", make_result(), image_sha256=image_sha(1), source="cli")

    assert second.capture_created is True
    assert second.capture_id != first.capture_id


def test_save_capture_unclassified_faces_skipped(store: HistoryStore) -> None:
    store.create_person("P-1")
    faces = (make_face(1), make_face(2, probabilities=None), make_face(3))

    summary = store.save_capture("P-1", make_result(faces), image_sha256=image_sha(1), source="cli")

    assert summary.faces_added == (1, 3)
    assert summary.faces_skipped_unclassified == (2,)
    assert "Skipped unclassified face 2" in summary.describe()
    assert list(store.history("P-1")["face_number"]) == [1, 3]


def test_save_capture_all_unclassified_saves_nothing(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")
    faces = (make_face(1, probabilities=None),)

    summary = store.save_capture("P-1", make_result(faces), image_sha256=image_sha(1), source="cli")

    assert summary.capture_id is None
    assert summary.changed is False
    assert summary.faces_skipped_unclassified == (1,)
    assert summary.describe().startswith("Nothing saved for P-1")
    assert table_counts(database_url)["capture"] == 0


def test_save_capture_no_faces_saves_nothing(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")

    summary = store.save_capture("P-1", make_result(()), image_sha256=image_sha(1), source="cli")

    assert summary.capture_id is None
    assert table_counts(database_url)["capture"] == 0


@pytest.mark.parametrize(
    "probabilities",
    [
        (math.nan, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2),
        (math.inf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (-math.inf, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (-0.1, 1.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.5, 0.5),
    ],
    ids=["nan", "inf", "minus-inf", "negative", "sum-not-one", "wrong-length"],
)
def test_save_capture_invalid_probabilities_rejected(
    store: HistoryStore, database_url: str, probabilities: tuple[float, ...]
) -> None:
    store.create_person("P-1")
    faces = (make_face(1), make_face(2, probabilities=probabilities))

    with pytest.raises(StoreError, match=r"face 2 has invalid probabilities"):
        store.save_capture("P-1", make_result(faces), image_sha256=image_sha(1), source="cli")

    counts = table_counts(database_url)
    assert counts["capture"] == 0
    assert counts["face_observation"] == 0


def test_save_capture_naive_datetime_rejected(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")

    with pytest.raises(StoreError, match=r"pass a timezone-aware datetime"):
        store.save_capture(
            "P-1", make_result(), image_sha256=image_sha(1), source="cli", captured_at=datetime(2024, 5, 1, 9)
        )
    assert table_counts(database_url)["capture"] == 0


def test_save_capture_offset_stored_as_utc(store: HistoryStore) -> None:
    store.create_person("P-1")
    noon_plus_two = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))

    store.save_capture("P-1", make_result(), image_sha256=image_sha(1), source="cli", captured_at=noon_plus_two)
    captured = store.history("P-1")["captured_at"].iloc[0]

    assert captured == pd.Timestamp("2024-05-01T10:00:00Z")
    assert str(captured.tz) == "UTC"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"image_sha256": "abc", "source": "cli"}, r"invalid image_sha256 'abc': expected 64 hexadecimal digits"),
        ({"image_sha256": "g" * 64, "source": "cli"}, r"invalid image_sha256"),
        ({"image_sha256": image_sha(1), "source": "email"}, r"invalid capture source 'email'; use one of upload"),
        ({"image_sha256": image_sha(1), "source": "cli", "face_numbers": [7]}, r"face number\(s\) 7 not in the result"),
    ],
    ids=["short-sha", "non-hex-sha", "source", "face-number"],
)
def test_save_capture_invalid_arguments_rejected(store: HistoryStore, arguments: dict, message: str) -> None:
    store.create_person("P-1")

    with pytest.raises(StoreError, match=message):
        store.save_capture("P-1", make_result(), **arguments)


def test_save_capture_failed_image_rejected(store: HistoryStore) -> None:
    store.create_person("P-1")
    failed = ImageResult(source="broken.jpg", width=0, height=0, error=ErrorInfo("corrupt", "truncated JPEG"))

    with pytest.raises(StoreError, match=r"cannot save broken.jpg: it failed to load \(corrupt: truncated JPEG\)"):
        store.save_capture("P-1", failed, image_sha256=image_sha(1), source="cli")


def test_save_capture_unknown_person_rejected(store: HistoryStore) -> None:
    with pytest.raises(StoreError, match=r"person 'P-7' not found; create it with"):
        store.save_capture("P-7", make_result(), image_sha256=image_sha(1), source="cli")


# Thumbnails


def test_thumbnails_dropped_by_default(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1")

    summary = store.save_capture(
        "P-1", make_result(), image_sha256=image_sha(1), source="upload", thumbnails={1: png_bytes(astronaut_face())}
    )

    assert summary.thumbnails_added == 0
    assert table_counts(database_url)["face_thumbnail"] == 0
    assert store.get_thumbnail(summary.capture_id, 1) is None  # type: ignore[arg-type]


def test_thumbnails_stored_when_enabled(database_url: str) -> None:
    png = png_bytes(astronaut_face().resize((112, 112)))
    jpeg = jpeg_bytes(astronaut_face().resize((112, 112)))
    with HistoryStore(database_url, store_thumbnails=True) as store:
        store.create_person("P-1")

        summary = store.save_capture(
            "P-1", make_result(face_count=3), image_sha256=image_sha(1), source="upload", thumbnails={1: png, 3: jpeg}
        )

        assert summary.thumbnails_added == 2
        assert store.get_thumbnail(summary.capture_id, 1) == png  # type: ignore[arg-type]
        assert store.get_thumbnail(summary.capture_id, 3) == jpeg  # type: ignore[arg-type]
        assert store.get_thumbnail(summary.capture_id, 2) is None  # type: ignore[arg-type]
    media_types = raw_rows(database_url, "SELECT media_type FROM face_thumbnail ORDER BY media_type")
    assert media_types == [("image/jpeg",), ("image/png",)]


def test_thumbnails_enabled_by_environment(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FED_STORE_THUMBNAILS", "1")
    with HistoryStore(database_url) as store:
        store.create_person("P-1")

        thumbnails = {2: png_bytes(astronaut_face())}
        summary = store.save_capture(
            "P-1", make_result(), image_sha256=image_sha(1), source="upload", thumbnails=thumbnails
        )

        assert store.store_thumbnails is True
        assert summary.thumbnails_added == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image", r"thumbnail of face 1 is not a readable image"),
        ("full-jpeg", r"thumbnail of face 1 is 512x512 pixels; the maximum side is 256"),
        ("full-png", r"thumbnail of face 1 has \d+ bytes; the maximum is 262144"),
        ("gif", r"thumbnail of face 1 is GIF; use PNG or JPEG"),
    ],
    ids=["garbage", "full-jpeg", "full-png", "gif"],
)
def test_thumbnails_invalid_rejected(database_url: str, data: bytes | str, message: str) -> None:
    if data == "full-jpeg":
        data = jpeg_bytes(astronaut())
    elif data == "full-png":
        data = png_bytes(astronaut())
    elif data == "gif":
        buffer = io.BytesIO()
        astronaut_face().resize((64, 64)).save(buffer, format="GIF")
        data = buffer.getvalue()
    with HistoryStore(database_url, store_thumbnails=True) as store:
        store.create_person("P-1")

        with pytest.raises(StoreError, match=message):
            store.save_capture("P-1", make_result(), image_sha256=image_sha(1), source="upload", thumbnails={1: data})
    assert table_counts(database_url)["capture"] == 0


# Deleting


def test_delete_person_cascades_everything(database_url: str) -> None:
    thumbnail = png_bytes(astronaut_face().resize((96, 96)))
    with HistoryStore(database_url, store_thumbnails=True) as store:
        store.create_person("P-1", "Private Name")
        store.create_person("P-2")
        for index in range(3):
            store.save_capture(
                "P-1",
                make_result(face_count=2),
                image_sha256=image_sha(index),
                source="upload",
                thumbnails={1: thumbnail, 2: thumbnail},
            )
        store.save_capture("P-2", make_result(face_count=1), image_sha256=image_sha(0), source="upload")

        summary = store.delete_person("P-1")

        assert summary == DeleteSummary(person_code="P-1", captures=3, observations=6, thumbnails=6)
        assert store.get_person("P-1") is None
        assert len(store.history("P-2")) == 1
        latest = store.audit_events(limit=1)[0]
        assert latest.action == "person_deleted"
        assert latest.person_code == "P-1"
        assert latest.counts == {"captures": 3, "observations": 6, "thumbnails": 6}
    counts = table_counts(database_url)
    assert counts["person"] == 1
    assert counts["capture"] == 1
    assert counts["face_observation"] == 1
    assert counts["face_thumbnail"] == 0


def test_delete_person_unknown_rejected(store: HistoryStore) -> None:
    with pytest.raises(StoreError, match=r"person 'P-1' not found"):
        store.delete_person("P-1")


# History queries


def test_history_time_range_exact_rows(store: HistoryStore) -> None:
    store.create_person("P-1")
    store.create_person("P-2")
    for hour in (8, 9, 10, 11, 12):
        store.save_capture(
            "P-1", make_result(face_count=1), image_sha256=image_sha(hour), source="cli", captured_at=at(hour)
        )
    store.save_capture("P-2", make_result(face_count=1), image_sha256=image_sha(99), source="cli", captured_at=at(10))

    window = store.history("P-1", since=at(9), until=at(11))
    from_ten = store.history("P-1", since=at(10))
    before_nine = store.history("P-1", until=at(9))
    shifted = store.history("P-1", since=datetime(2024, 5, 1, 11, 30, tzinfo=timezone(timedelta(hours=2))))

    assert list(window["image_sha256"]) == [image_sha(9), image_sha(10)]
    assert list(from_ten["image_sha256"]) == [image_sha(10), image_sha(11), image_sha(12)]
    assert list(before_nine["image_sha256"]) == [image_sha(8)]
    assert list(shifted["image_sha256"]) == [image_sha(10), image_sha(11), image_sha(12)]


def test_history_sorted_by_capture_time(store: HistoryStore) -> None:
    store.create_person("P-1")
    for hour in (12, 8, 10):
        store.save_capture(
            "P-1", make_result(face_count=2), image_sha256=image_sha(hour), source="cli", captured_at=at(hour)
        )

    history = store.history("P-1")

    assert list(history["captured_at"].dt.hour) == [8, 8, 10, 10, 12, 12]
    assert list(history["face_number"]) == [1, 2, 1, 2, 1, 2]


def test_history_naive_bounds_rejected(store: HistoryStore) -> None:
    store.create_person("P-1")

    with pytest.raises(StoreError, match=r"since 2024-05-01T09:00:00 has no time zone; pass a timezone-aware"):
        store.history("P-1", since=datetime(2024, 5, 1, 9))
    with pytest.raises(StoreError, match=r"until .* has no time zone"):
        store.history("P-1", until=datetime(2024, 5, 1, 9))


def test_history_reversed_range_rejected(store: HistoryStore) -> None:
    store.create_person("P-1")

    with pytest.raises(StoreError, match=r"empty time range"):
        store.history("P-1", since=at(10), until=at(9))


def test_history_empty_has_typed_columns(store: HistoryStore) -> None:
    store.create_person("P-1")

    history = store.history("P-1")

    assert history.empty
    assert tuple(history.columns) == HISTORY_COLUMNS
    assert str(history["captured_at"].dtype) == "datetime64[us, UTC]"
    assert history["capture_id"].dtype == "int64"
    assert history["happy"].dtype == "float64"
    assert history["uncertain"].dtype == bool


def test_history_columns_in_documented_order(store: HistoryStore) -> None:
    store.create_person("P-1")
    store.save_capture("P-1", make_result(), image_sha256=image_sha(1), source="cli")

    history = store.history("P-1")

    assert tuple(history.columns) == (
        "captured_at", "capture_id", "source", "image_sha256", "face_number", "top_expression", "top_probability",
        "uncertain", *CLASSES, "confidence", "box_x", "box_y", "box_w", "box_h", "model_name", "model_version",
    )  # fmt: skip
    assert str(history["captured_at"].dtype) == "datetime64[us, UTC]"


# Exports and audit


def test_export_csv_content(store: HistoryStore) -> None:
    store.create_person("P-1", "Private Name")
    store.save_capture(
        "P-1", make_result(face_count=2), image_sha256=image_sha(1), source="camera", captured_at=at(9, 15)
    )

    exported = store.export_csv("P-1")
    rows = list(csv.DictReader(io.StringIO(exported)))

    assert exported.splitlines()[0].split(",") == ["person_code", *HISTORY_COLUMNS]
    assert len(rows) == 2
    assert rows[0]["person_code"] == "P-1"
    assert rows[0]["captured_at"] == "2024-05-01T09:15:00+00:00"
    assert rows[0]["source"] == "camera"
    assert rows[0]["top_expression"] == "happy"
    assert float(rows[0]["happy"]) == pytest.approx(0.72)
    assert rows[1]["face_number"] == "2"
    assert "Private Name" not in exported
    event = store.audit_events(code="P-1", limit=1)[0]
    assert event.action == "history_exported"
    assert event.counts == {"observations": 2, "captures": 1}


def test_export_json_content(store: HistoryStore) -> None:
    store.create_person("P-1", "Zoë Ångström")
    store.save_capture(
        "P-1",
        make_result((make_face(1, top_class="surprise", top=0.9),)),
        image_sha256=image_sha(1),
        source="upload",
        captured_at=datetime(2024, 5, 1, 9, 15, tzinfo=timezone(timedelta(hours=-5))),
    )

    document = json.loads(store.export_json("P-1"))

    assert document["person"]["code"] == "P-1"
    assert document["person"]["display_name"] == "Zoë Ångström"
    assert "not a diagnosis" in document["note"]
    assert len(document["observations"]) == 1
    observation = document["observations"][0]
    assert observation["captured_at"] == "2024-05-01T14:15:00+00:00"
    assert observation["top_expression"] == "surprise"
    assert observation["top_probability"] == pytest.approx(0.9)
    assert list(observation["probabilities"]) == list(CLASSES)
    assert observation["box"] == [40, 31, 33, 37]
    assert observation["image_sha256"] == image_sha(1)
    assert datetime.fromisoformat(document["exported_at"]).utcoffset() == timedelta(0)
    assert store.audit_events(code="P-1", limit=1)[0].action == "history_exported"


def test_export_time_range_limits_rows(store: HistoryStore) -> None:
    store.create_person("P-1")
    for hour in (8, 9, 10):
        store.save_capture(
            "P-1", make_result(face_count=1), image_sha256=image_sha(hour), source="cli", captured_at=at(hour)
        )

    document = json.loads(store.export_json("P-1", since=at(9), until=at(10)))

    assert [item["captured_at"] for item in document["observations"]] == ["2024-05-01T09:00:00+00:00"]


def test_audit_events_record_actions(store: HistoryStore) -> None:
    store.create_person("P-1", "Secret Display Name")
    store.rename_person("P-1", "Another Secret")
    store.save_capture("P-1", make_result(face_count=2), image_sha256=image_sha(1), source="cli")
    store.export_csv("P-1")
    store.create_person("P-2")

    everyone = store.audit_events()
    first_person = store.audit_events(code="P-1")

    assert [event.action for event in everyone] == [
        "person_created", "history_exported", "capture_saved", "person_renamed", "person_created",
    ]  # fmt: skip
    assert [event.person_code for event in first_person] == ["P-1"] * 4
    saved = first_person[1]
    assert saved.counts["faces_added"] == 2
    assert saved.counts["faces_skipped"] == 0
    assert all(event.occurred_at.utcoffset() == timedelta(0) for event in everyone)
    assert len(store.audit_events(limit=2)) == 2


def test_audit_events_contain_no_names(store: HistoryStore, database_url: str) -> None:
    store.create_person("P-1", "Secret Display Name")
    store.rename_person("P-1", "Another Secret")
    store.export_json("P-1")
    store.delete_person("P-1")

    stored = repr(raw_rows(database_url, "SELECT * FROM audit_event"))

    assert "Secret" not in stored
    assert "P-1" in stored


def test_audit_events_invalid_limit_rejected(store: HistoryStore) -> None:
    with pytest.raises(StoreError, match=r"invalid audit event limit 0"):
        store.audit_events(limit=0)


@pytest.mark.slow
def test_history_ten_thousand_rows_complete(tmp_path) -> None:
    # Query speed is measured by benchmarks/bench_history.py, not asserted here:
    # a time limit in a test fails on a busy machine whatever the code does.
    with HistoryStore(f"sqlite:///{tmp_path / 'speed.sqlite3'}") as store:
        store.create_person("P-1")
        result = make_result(face_count=50)
        for index in range(200):
            store.save_capture(
                "P-1", result, image_sha256=image_sha(index), source="cli", captured_at=at(0) + timedelta(minutes=index)
            )
        history = store.history("P-1")

    assert len(history) == 10_000
    assert history["captured_at"].is_monotonic_increasing
