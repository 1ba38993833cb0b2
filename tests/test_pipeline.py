"""Pipeline: real photos in, numbered faces with calibrated probabilities out; bad input never raises."""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import fedcore
from fedcore.classify import ExpressionClassifier, is_uncertain
from fedcore.constants import CLASSES, DEFAULT_CHECKPOINT
from fedcore.pipeline import Pipeline, get_default_pipeline
from tests.helpers import astronaut, astronaut_face, jpeg_bytes, photo_index, png_bytes, require_photos


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"the shipped model {DEFAULT_CHECKPOINT} is missing")
    return get_default_pipeline()


def row_of_faces(count: int, width: int = 110) -> Image.Image:
    face = astronaut_face().resize((width, round(width * 177 / 139)))
    canvas = Image.new("RGB", (count * (width + 30) + 30, face.height + 60), "white")
    for i in range(count):
        canvas.paste(face, (30 + i * (width + 30), 30))
    return canvas


def assert_valid_probabilities(result) -> None:
    for face in result.faces:
        assert face.probabilities is not None
        assert len(face.probabilities) == len(CLASSES)
        assert all(math.isfinite(p) and 0 <= p <= 1 for p in face.probabilities)
        assert sum(face.probabilities) == pytest.approx(1.0, abs=1e-6)
        assert face.label in CLASSES


def test_analyze_astronaut_one_face(pipeline):
    result = pipeline.analyze(astronaut())
    assert result.error is None
    assert (result.width, result.height) == (512, 512)
    assert len(result.faces) == 1
    assert result.faces[0].number == 1
    assert_valid_probabilities(result)
    assert result.model_name == "fed-vgg16-ferplus"


def test_analyze_every_input_type_same_result(pipeline):
    image = astronaut()
    reference = pipeline.analyze(image)
    data = png_bytes(image)
    for source in (data, io.BytesIO(data), np.asarray(image)):
        result = pipeline.analyze(source)
        assert result.faces == reference.faces


def test_analyze_numbers_faces_left_to_right(pipeline):
    result = pipeline.analyze(row_of_faces(4))
    assert [face.number for face in result.faces] == [1, 2, 3, 4]
    xs = [face.box[0] for face in result.faces]
    assert xs == sorted(xs)
    assert_valid_probabilities(result)


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"", "empty"), (b"this is plain text, not a picture", "unsupported"), (png_bytes(astronaut())[:4000], "corrupt")],
)
def test_analyze_bad_bytes_error_not_raise(pipeline, data, kind):
    result = pipeline.analyze(data, name="upload.jpg")
    assert result.error is not None
    assert result.error.kind == kind
    assert "upload.jpg" in result.error.message
    assert result.faces == ()


def test_analyze_missing_path_error(pipeline, tmp_path):
    result = pipeline.analyze(tmp_path / "nope.jpg")
    assert result.error is not None
    assert result.error.kind == "not_found"


def test_analyze_pixel_limit_rejects(tmp_path):
    small_limit = Pipeline(max_pixels=100_000)
    result = small_limit.analyze(jpeg_bytes(astronaut()), name="big.jpg")
    assert result.error is not None
    assert result.error.kind == "too_large"


def test_analyze_no_detect_whole_image(pipeline):
    crop = astronaut_face(margin=0.05)
    result = pipeline.analyze(crop, detect=False)
    assert len(result.faces) == 1
    assert result.faces[0].box == (0, 0, crop.width, crop.height)
    assert "face detection skipped" in result.notes[-1]
    assert_valid_probabilities(result)


def test_analyze_no_face_empty(pipeline):
    result = pipeline.analyze(Image.new("RGB", (300, 200), (30, 120, 200)))
    assert result.error is None
    assert result.faces == ()


def test_analyze_multi_frame_note(pipeline):
    frames = [astronaut().resize((256, 256)), Image.new("RGB", (256, 256), "black")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    result = pipeline.analyze(buffer.getvalue(), name="clip.gif")
    assert len(result.faces) == 1
    assert any("2 frames" in note for note in result.notes)


def test_analyze_threads_match_sequential(pipeline):
    images = [astronaut(), row_of_faces(3), astronaut().rotate(180), Image.new("RGB", (64, 64))]
    sequential = [pipeline.analyze(image) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(pipeline.analyze, images * 2))
    assert parallel == sequential * 2


def test_analyze_non_finite_output_unclassified():
    broken = Pipeline()
    with torch.no_grad():
        broken.classifier.model.classifier[-1].bias.fill_(float("nan"))
    result = broken.analyze(astronaut())
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.probabilities is None
    assert face.label is None
    assert face.to_json()["probabilities"] is None
    assert any("could not be classified" in note for note in result.notes)


def test_classifier_applies_temperature(pipeline):
    classifier: ExpressionClassifier = pipeline.classifier
    crops = np.full((1, classifier.info.input_size, classifier.info.input_size), 128, dtype=np.uint8)
    logits = classifier.logits(crops)[0].astype(np.float64) / classifier.info.temperature
    expected = np.exp(logits - logits.max())
    expected /= expected.sum()
    assert classifier.predict(crops)[0].probabilities == pytest.approx(tuple(expected), abs=1e-9)


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ((0.9, 0.05, 0.05, 0, 0, 0, 0, 0), False),
        ((0.45, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05), True),
        ((0.52, 0.40, 0.08, 0, 0, 0, 0, 0), True),
        ((0.60, 0.30, 0.10, 0, 0, 0, 0, 0), False),
    ],
)
def test_is_uncertain_cases(probabilities, expected):
    assert is_uncertain(probabilities) is expected


def test_package_analyze_uses_default(pipeline):
    result = fedcore.analyze(astronaut())
    assert len(result.faces) == 1


@pytest.mark.slow
def test_analyze_shared_photos_all_valid(pipeline):
    photos = require_photos()
    for row in photo_index():
        result = pipeline.analyze(photos / row["file"], max_faces=None)
        assert result.error is None, row["file"]
        assert len(result.faces) == int(row["faces_reference"]), row["file"]
        assert_valid_probabilities(result)
