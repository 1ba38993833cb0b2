"""The Streamlit pages through streamlit.testing.v1.AppTest, with the real model, detector and SQLite store.

AppTest in Streamlit 1.67 registers files set on ``file_uploader`` with the
script runner, so uploads go through the same code path as in a browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import fedcore.constants
import fedcore.pipeline
from fedcore.constants import CLASSES
from fedcore.dashboard import get_pipeline
from fedcore.results import DetectedFace, FaceResult, ImageResult
from fedcore.store import HistoryStore
from tests.helpers import PROJECT_DIR, astronaut, jpeg_bytes, png_bytes

APP = PROJECT_DIR / "app.py"
# The first run loads MTCNN and the VGG-16, which takes tens of seconds on a busy CPU.
RUN_TIMEOUT_S = 180
ANALYSES_KEY = "analyze_cache"
ASTRONAUT_NAME = "astronaut.png"


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    monkeypatch.setenv("FED_DATABASE_URL", url)
    monkeypatch.delenv("FED_DISPLAY_TIMEZONE", raising=False)
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[HistoryStore]:
    with HistoryStore(database_url) as history_store:
        yield history_store


@pytest.fixture(scope="module")
def astronaut_png() -> bytes:
    return png_bytes(astronaut())


@pytest.fixture(scope="module")
def astronaut_result(astronaut_png: bytes) -> ImageResult:
    """The pipeline's own result for the astronaut photo, to compare the page against."""
    return fedcore.pipeline.get_default_pipeline().analyze(astronaut_png, name=ASTRONAUT_NAME)


def open_page(page: str | None = None) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT_S)
    if page is not None:
        app.switch_page(f"pages/{page}.py")
    return app.run()


def upload(app: AppTest, files: Sequence[tuple[str, bytes, str]]) -> AppTest:
    app.file_uploader[0].set_value(list(files))
    return app.run()


def plotly_specs(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def plotted(values: list | dict) -> list:
    """Return plain values of a Plotly JSON array, decoding plotly 6's base64 typed arrays."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def fake_face_result(number: int, probabilities: Sequence[float], *, uncertain: bool = False) -> FaceResult:
    keypoints = ((40.0, 40.0), (60.0, 40.0), (50.0, 50.0), (42.0, 60.0), (58.0, 60.0))
    detection = DetectedFace(box=(20 + 80 * (number - 1), 20, 60, 70), confidence=0.999, keypoints=keypoints)
    return FaceResult(number=number, detection=detection, probabilities=tuple(probabilities), uncertain=uncertain)


def one_hot(expression: str, weight: float = 0.72) -> tuple[float, ...]:
    rest = (1.0 - weight) / (len(CLASSES) - 1)
    return tuple(weight if name == expression else rest for name in CLASSES)


def seed_captures(
    store: HistoryStore, code: str, captures: Sequence[tuple[datetime, str]], *, faces_per_capture: int = 1
) -> None:
    """Save one capture per (UTC time, top expression) through the store, each with the same top expression per face."""
    if store.get_person(code) is None:
        store.create_person(code, "Seeded person")
    for index, (moment, expression) in enumerate(captures):
        faces = tuple(fake_face_result(number, one_hot(expression)) for number in range(1, faces_per_capture + 1))
        result = ImageResult(
            source=f"seed-{index}.png",
            width=80 * faces_per_capture + 40,
            height=300,
            faces=faces,
            model_name="fed-vgg16-ferplus",
            model_version="test",
        )
        digest = hashlib.sha256(f"{code}-{index}-{moment.isoformat()}".encode()).hexdigest()
        store.save_capture(code, result, image_sha256=digest, source="upload", captured_at=moment)


# --- App and navigation -------------------------------------------------------------


def test_app_opens_on_analyze(database_url):
    app = open_page()
    assert not app.exception
    assert texts(app.title) == ["Analyze"]
    assert any("not diagnoses" in caption for caption in texts(app.caption))
    assert app.file_uploader[0].accept_multiple_files


def test_app_every_page_renders(database_url):
    for page, title in (("history", "History"), ("people", "People"), ("model", "Model")):
        app = open_page(page)
        assert not app.exception, page
        assert texts(app.title) == [title]


def test_analyze_uploader_accepts_image_types(database_url):
    app = open_page()
    allowed = set(app.file_uploader[0].allowed_type)
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tiff", ".tif", ".heic", ".heif"} <= allowed


# --- Analyze ------------------------------------------------------------------------


def test_analyze_upload_shows_one_face(database_url, astronaut_png, astronaut_result):
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    assert not app.exception
    assert not app.error
    face = astronaut_result.faces[0]
    assert len(astronaut_result.faces) == 1
    assert "**Face 1**" in texts(app.markdown)
    assert f"Top expression: **{face.label}** ({face.top_probability:.0%})" in texts(app.markdown)
    # The annotated photo and the face thumbnail.
    assert len(app.image) == 2
    specs = plotly_specs(app)
    assert len(specs) == 1
    bars = specs[0]["data"][0]
    assert bars["y"] == list(CLASSES)
    assert plotted(bars["x"]) == pytest.approx(list(face.probabilities))
    assert bars["marker"]["color"] == [fedcore.constants.CLASS_COLORS[name] for name in CLASSES]


def test_analyze_uppercase_extension_accepted(database_url, astronaut_png):
    app = upload(open_page(), [("PHOTO.JPG", jpeg_bytes(astronaut()), "image/jpeg")])
    assert not app.exception
    assert not app.error
    assert len(plotly_specs(app)) == 1


def test_analyze_bad_file_beside_good(database_url, astronaut_png):
    files = [
        ("broken.jpg", b"\xff\xd8\xff\xe0 this is not really a JPEG", "image/jpeg"),
        (ASTRONAUT_NAME, astronaut_png, "image/png"),
        ("empty.png", b"", "image/png"),
    ]
    app = upload(open_page(), files)
    assert not app.exception
    errors = texts(app.error)
    assert len(errors) == 2
    assert errors[0].startswith("broken.jpg: ")
    assert errors[1].startswith("empty.png: the file is empty")
    assert len(plotly_specs(app)) == 1
    status = app.dataframe[0].value
    assert list(status["file"]) == ["broken.jpg", ASTRONAUT_NAME, "empty.png"]
    assert status["status"][1] == "1 face"
    assert status["status"][2].startswith("The file is empty")
    assert "Processed 3 of 3 photos; 1 could be read." in texts(app.markdown)


def test_analyze_no_face_found(database_url):
    blank = png_bytes(Image.new("RGB", (320, 240), "#8090a0"))
    app = upload(open_page(), [("wall.png", blank, "image/png")])
    assert not app.exception
    assert any(warning.startswith("No face found in wall.png") for warning in texts(app.warning))
    assert not plotly_specs(app)


def test_analyze_rerun_reuses_cached_result(database_url, astronaut_png):
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    cache = app.session_state[ANALYSES_KEY]
    assert len(cache) == 1
    first = next(iter(cache.values()))
    app.run()
    assert app.session_state[ANALYSES_KEY] is cache
    assert next(iter(cache.values())) is first
    assert len(plotly_specs(app)) == 1


def test_analyze_duplicate_bytes_analyzed_once(database_url, astronaut_png):
    files = [(ASTRONAUT_NAME, astronaut_png, "image/png"), ("copy.png", astronaut_png, "image/png")]
    app = upload(open_page(), files)
    assert not app.exception
    assert len(app.session_state[ANALYSES_KEY]) == 1
    assert texts(app.main.subheader) == [ASTRONAUT_NAME, "copy.png"]
    assert len(plotly_specs(app)) == 2
    assert [widget.label for widget in app.multiselect] == [
        f"Faces of this person in {ASTRONAUT_NAME}",
        "Faces of this person in copy.png",
    ]


def test_analyze_settings_change_reanalyses(database_url, astronaut_png):
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    app.slider[0].set_value(0.95).run()
    keys = sorted(app.session_state[ANALYSES_KEY])
    assert [key[1] for key in keys] == [0.9, 0.95]


def test_analyze_save_twice_stores_once(database_url, store, astronaut_png):
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    assert app.selectbox(key="save_person").value == "Create a new person…"
    assert app.text_input(key="save_new_code").value == "P-0001"
    app.text_input(key="save_new_name").set_value("Ward 3 volunteer")
    app.button(key="save_button").click().run()
    assert not app.exception
    assert texts(app.success) == [f"{ASTRONAUT_NAME}: Saved face 1 to capture 1 of P-0001."]
    # The new person is selected, so a second click files under the same code.
    assert app.selectbox(key="save_person").value == "P-0001"

    app.button(key="save_button").click().run()
    assert not app.success
    assert any("already saved" in message for message in texts(app.info))
    assert store.get_person("P-0001").display_name == "Ward 3 volunteer"
    history = store.history("P-0001")
    assert len(history) == 1
    assert history["source"].tolist() == ["upload"]
    assert history["image_sha256"][0] == hashlib.sha256(astronaut_png).hexdigest()


def test_analyze_camera_picture_saved_as_camera(database_url, store):
    app = open_page()
    assert not app.camera_input
    app.toggle(key="use_camera").set_value(True).run()
    picture = jpeg_bytes(astronaut())
    app.camera_input[0].set_value(("camera.jpg", picture, "image/jpeg")).run()
    assert not app.exception
    assert len(plotly_specs(app)) == 1
    app.button(key="save_button").click().run()
    assert texts(app.success) == ["camera picture: Saved face 1 to capture 1 of P-0001."]
    history = store.history("P-0001")
    assert history["source"].tolist() == ["camera"]
    assert history["image_sha256"][0] == hashlib.sha256(picture).hexdigest()


def test_analyze_save_needs_chosen_face(database_url, store, astronaut_png):
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    app.multiselect[0].set_value([]).run()
    assert app.button(key="save_button").disabled
    assert "Choose at least one face above to save." in texts(app.caption)


def test_analyze_save_under_existing_person(database_url, store, astronaut_png):
    store.create_person("P-0042", "Existing")
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    assert app.text_input(key="save_new_code").value == "P-0043"
    app.selectbox(key="save_person").set_value("P-0042").run()
    app.button(key="save_button").click().run()
    assert texts(app.success) == [f"{ASTRONAUT_NAME}: Saved face 1 to capture 1 of P-0042."]
    assert len(store.history("P-0042")) == 1


def test_analyze_invalid_code_shows_error(database_url, store, astronaut_png):
    app = upload(open_page(), [(ASTRONAUT_NAME, astronaut_png, "image/png")])
    app.text_input(key="save_new_code").set_value("Jane Doe")
    app.button(key="save_button").click().run()
    assert not app.exception
    assert any(message.startswith("Saving stopped: invalid person code 'Jane Doe'") for message in texts(app.error))
    assert store.list_people() == []


def test_analyze_missing_model_shows_error(database_url, tmp_path, monkeypatch):
    missing = tmp_path / "missing-model.safetensors"
    monkeypatch.setattr(fedcore.pipeline, "get_default_pipeline", lambda: fedcore.pipeline.Pipeline(checkpoint=missing))
    get_pipeline.clear()
    try:
        app = open_page()
    finally:
        get_pipeline.clear()
    assert not app.exception
    errors = texts(app.error)
    assert len(errors) == 1
    assert errors[0].startswith("The expression model could not be loaded:")
    assert "reinstall the model files" in errors[0]
    assert not app.file_uploader


# --- History ------------------------------------------------------------------------


def test_history_without_people_explains(database_url):
    app = open_page("history")
    assert not app.exception
    assert any(message.startswith("No people yet.") for message in texts(app.info))


def test_history_shows_charts_and_download(database_url, store):
    start = datetime(2025, 5, 5, 9, 0, tzinfo=timezone.utc)
    expressions = ["happy", "happy", "sad", "neutral", "happy"]
    seed_captures(store, "P-0007", [(start + timedelta(days=day), name) for day, name in enumerate(expressions)])
    app = open_page("history")
    assert not app.exception
    assert app.selectbox(key="history_person").value == "P-0007"
    assert app.date_input(key="history_dates-P-0007-UTC").value == (date(2025, 5, 5), date(2025, 5, 9))

    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Captures"] == "5"
    assert metrics["Most frequent expression"] == "happy"
    assert metrics["Faces with happy above 50%"] == "60%"

    specs = plotly_specs(app)
    assert len(specs) == 3
    lines, timeline, bars = specs
    assert [trace["name"] for trace in lines["data"]] == list(CLASSES)
    assert [trace["name"] for trace in timeline["data"]] == ["neutral", "happy", "sad"]
    assert bars["layout"]["barmode"] == "stack"
    happy_bars = next(trace for trace in bars["data"] if trace["name"] == "happy")
    assert plotted(happy_bars["y"]) == [1, 1, 0, 0, 1]

    table = app.dataframe[0].value
    assert table["time"].tolist()[0] == "2025-05-09 09:00 UTC"
    assert table["top expression"].tolist() == ["happy", "neutral", "sad", "happy", "happy"]
    assert [button.label for button in app.get("download_button")] == ["Download CSV of the whole history"]


def test_history_display_timezone_across_dst(database_url, store):
    # Europe/Berlin moved from CET to CEST at 01:00 UTC on 2025-03-30.
    seed_captures(
        store,
        "P-0100",
        [
            (datetime(2025, 3, 29, 23, 30, tzinfo=timezone.utc), "happy"),
            (datetime(2025, 3, 30, 0, 30, tzinfo=timezone.utc), "sad"),
            (datetime(2025, 3, 30, 1, 30, tzinfo=timezone.utc), "anger"),
        ],
    )
    app = open_page("history")
    app.selectbox(key="history_timezone").set_value("Europe/Berlin").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert table["time"].tolist() == ["2025-03-30 03:30 CEST", "2025-03-30 01:30 CET", "2025-03-30 00:30 CET"]
    lines = plotly_specs(app)[0]["data"][0]
    assert [value[:16] for value in plotted(lines["x"])] == ["2025-03-30T00:30", "2025-03-30T01:30", "2025-03-30T03:30"]
    assert lines["customdata"][2][0] == "2025-03-30 03:30 CEST"
    # In Berlin all three fall on one local day; in UTC the first is a day earlier.
    bars = plotly_specs(app)[2]
    assert {plotted(trace["x"])[0] for trace in bars["data"] if sum(plotted(trace["y"]))} == {"2025-03-30"}


def test_history_timezone_default_from_env(database_url, store, monkeypatch):
    monkeypatch.setenv("FED_DISPLAY_TIMEZONE", "America/New_York")
    seed_captures(store, "P-0200", [(datetime(2025, 1, 10, 3, 0, tzinfo=timezone.utc), "fear")])
    app = open_page("history")
    assert app.selectbox(key="history_timezone").value == "America/New_York"
    assert app.dataframe[0].value["time"].tolist() == ["2025-01-09 22:00 EST"]


def test_history_change_against_previous_period(database_url, store):
    base = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
    previous = [(base + timedelta(days=day), "sad") for day in range(3)]
    current = [(base + timedelta(days=7 + day), name) for day, name in enumerate(["happy", "happy", "sad", "happy"])]
    seed_captures(store, "P-0300", previous + current)
    app = open_page("history")
    app.date_input(key="history_dates-P-0300-UTC").set_value((date(2025, 6, 8), date(2025, 6, 14))).run()
    assert not app.exception
    metrics = {metric.label: metric for metric in app.metric}
    assert metrics["Captures"].value == "4"
    assert metrics["Captures"].delta == "1"
    assert metrics["Most frequent expression"].value == "happy"
    assert metrics["Most frequent expression"].delta == "was sad"
    assert metrics["Faces with happy above 50%"].value == "75%"
    assert metrics["Faces with happy above 50%"].delta == "+75.0 percentage points"
    assert len(app.dataframe[0].value) == 4


def test_history_empty_range_explains(database_url, store):
    seed_captures(store, "P-0400", [(datetime(2025, 2, 1, 8, 0, tzinfo=timezone.utc), "happy")])
    app = open_page("history")
    app.date_input(key="history_dates-P-0400-UTC").set_value((date(2025, 3, 1), date(2025, 3, 2))).run()
    assert not app.exception
    assert any(message.startswith("No captures of P-0400 between") for message in texts(app.info))
    assert not plotly_specs(app)


@pytest.mark.slow
def test_history_10000_observations_aggregated(database_url, store):
    # 1,000 hourly captures of 10 faces each: 10,000 observations in 1,000 hourly bins.
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    captures = [(start + timedelta(hours=hour), CLASSES[hour % len(CLASSES)]) for hour in range(1_000)]
    seed_captures(store, "P-0900", captures, faces_per_capture=10)
    app = open_page("history")
    assert not app.exception
    lines, timeline, bars = plotly_specs(app)
    assert lines["layout"]["title"]["text"] == "Estimated probability of each expression (hourly means)"
    assert len(plotted(lines["data"][0]["x"])) == 1_000
    assert timeline["layout"]["title"]["text"] == "Top expression of each capture (latest 2,000 of 10,000)"
    assert sum(len(plotted(trace["x"])) for trace in timeline["data"]) == 2_000
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Captures"] == "1000"
    assert metrics["Faces saved"] == "10000"
    assert len(app.dataframe[0].value) == 10_000


# --- People -------------------------------------------------------------------------


def test_people_create_and_rename(database_url, store):
    app = open_page("people")
    app.text_input(key="people_new_code").set_value("P-0500")
    app.text_input(key="people_new_name").set_value("Bed 12")
    app.button[0].click().run()
    assert not app.exception
    assert texts(app.success) == ["Created P-0500."]
    assert store.get_person("P-0500").display_name == "Bed 12"

    app.text_input(key="people_rename_name-P-0500").set_value("Bed 14")
    app.button(key="people_rename").click().run()
    assert texts(app.success) == ["P-0500 is now shown as 'Bed 14'."]
    assert store.get_person("P-0500").display_name == "Bed 14"
    assert app.dataframe[0].value["display name"].tolist() == ["Bed 14"]


def test_people_duplicate_code_rejected(database_url, store):
    store.create_person("P-0600")
    app = open_page("people")
    app.text_input(key="people_new_code").set_value("P-0600")
    app.button[0].click().run()
    assert not app.exception
    assert len(app.error) == 1
    assert app.error[0].value.startswith("The person was not created:")
    assert len(store.list_people()) == 1


def test_people_delete_needs_typed_code(database_url, store):
    seed_captures(store, "P-0700", [(datetime(2025, 4, 1, 10, 0, tzinfo=timezone.utc), "happy")])
    app = open_page("people")
    app.text_input(key="people_delete_confirm-P-0700").set_value("P-070")
    app.button(key="people_delete").click().run()
    assert texts(app.error) == ["Type the code P-0700 exactly to confirm deleting it; nothing was deleted."]
    assert len(store.history("P-0700")) == 1

    app.text_input(key="people_delete_confirm-P-0700").set_value("P-0700")
    app.button(key="people_delete").click().run()
    assert not app.exception
    assert texts(app.success) == ["Deleted P-0700 and all their data: 1 capture, 1 face estimate and 0 thumbnails."]
    assert store.get_person("P-0700") is None
    assert store.list_people() == []
    assert any(message.startswith("No people yet.") for message in texts(app.info))


def test_people_export_downloads_offered(database_url, store):
    seed_captures(store, "P-0800", [(datetime(2025, 4, 2, 10, 0, tzinfo=timezone.utc), "surprise")])
    app = open_page("people")
    assert [button.label for button in app.get("download_button")] == ["Download CSV", "Download JSON"]


# --- Model --------------------------------------------------------------------------


def test_model_page_missing_files_inform(database_url, tmp_path, monkeypatch):
    monkeypatch.setattr(fedcore.constants, "MODELS_DIR", tmp_path)
    app = open_page("model")
    assert not app.exception
    assert not app.error
    infos = texts(app.info)
    assert any("README.md" in message for message in infos)
    assert any("fed-vgg16-ferplus.json" in message for message in infos)
    assert any("test-report.json" in message for message in infos)
    assert any("confusion_matrix.png" in message for message in infos)


def test_model_page_shows_card_and_report(database_url, tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("# Test model card\n\nTrained on a small test set.\n", encoding="utf-8")
    metadata = {"name": "fed-vgg16-ferplus", "version": "9.9", "architecture": "vgg16_bn", "classes": list(CLASSES),
                "input_size": 48, "color_mode": "L", "temperature": 1.3, "flip_average": True}  # fmt: skip
    (tmp_path / "fed-vgg16-ferplus.json").write_text(json.dumps(metadata), encoding="utf-8")
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    per_class = {name: {"precision": 0.5, "recall": 0.25, "f1": 0.333, "support": 10 + i} for i, name in enumerate(CLASSES)}
    report = {"accuracy": 0.8125, "macro_f1": 0.6, "ece": 0.031, "per_class": per_class}
    (evaluation / "test-report.json").write_text(json.dumps(report), encoding="utf-8")
    Image.new("RGB", (40, 30), "white").save(evaluation / "confusion_matrix.png")
    monkeypatch.setattr(fedcore.constants, "MODELS_DIR", tmp_path)

    app = open_page("model")
    assert not app.exception
    assert "# Test model card\n\nTrained on a small test set." in texts(app.markdown)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Version"] == "9.9"
    assert metrics["Input"] == "48×48 L"
    assert metrics["Accuracy"] == "0.812"
    assert metrics["ECE"] == "0.031"
    details = app.table[0].value["value"]
    assert details["Temperature (calibration)"] == "1.3"
    assert details["Averaged with the mirror image"] == "yes"
    assert app.dataframe[0].value.index.tolist() == list(CLASSES)
    assert len(app.image) == 1
    assert texts(app.info) == ["reliability.png is not in " + str(evaluation) + ", so the reliability diagram is not shown."]


def test_model_page_invalid_json_warns(database_url, tmp_path, monkeypatch):
    (tmp_path / "fed-vgg16-ferplus.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(fedcore.constants, "MODELS_DIR", tmp_path)
    app = open_page("model")
    assert not app.exception
    assert any(message.startswith("fed-vgg16-ferplus.json could not be read") for message in texts(app.warning))
