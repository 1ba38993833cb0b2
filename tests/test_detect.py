"""FaceDetector on real MTCNN weights: real faces, pasted groups, borders, tiny and huge images."""

from __future__ import annotations

import pytest
from PIL import Image

from fedcore.detect import FaceDetector
from fedcore.results import KEYPOINT_NAMES
from tests.helpers import ASTRONAUT_FACE_BOX, astronaut, astronaut_face, iou, photo_index, require_photos


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def face_grid(columns: int, rows: int, tile_width: int) -> Image.Image:
    """Paste the same real face ``columns * rows`` times on a white canvas."""
    face = astronaut_face()
    tile_height = round(tile_width * face.height / face.width)
    tile = face.resize((tile_width, tile_height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (columns * tile_width, rows * tile_height), "white")
    for row in range(rows):
        for column in range(columns):
            canvas.paste(tile, (column * tile_width, row * tile_height))
    return canvas


def test_detect_astronaut_one_face(detector):
    detection = detector.detect(astronaut())
    assert len(detection.faces) == 1
    face = detection.faces[0]
    assert iou(face.box, ASTRONAUT_FACE_BOX) > 0.9
    assert face.confidence > 0.99
    assert all(isinstance(v, int) for v in face.box)
    assert len(face.keypoints) == len(KEYPOINT_NAMES)


def test_detect_astronaut_keypoints_inside_box(detector):
    face = detector.detect(astronaut()).faces[0]
    x, y, w, h = face.box
    for name in KEYPOINT_NAMES:
        px, py = face.keypoint(name)
        assert x <= px <= x + w, name
        assert y <= py <= y + h, name
    left_eye, right_eye = face.keypoint("left_eye"), face.keypoint("right_eye")
    assert left_eye[0] < right_eye[0]
    assert face.keypoint("nose")[1] > left_eye[1]
    assert face.keypoint("mouth_left")[1] > face.keypoint("nose")[1]


def test_detect_blank_image_empty_list(detector):
    detection = detector.detect(Image.new("RGB", (640, 480), (128, 128, 128)))
    assert detection.faces == ()
    assert detection.notes == ()


@pytest.mark.parametrize("size", [(1, 1), (5, 5), (19, 19), (1000, 3), (3, 1000), (12, 400)])
def test_detect_tiny_or_thin_image_no_crash(detector, size):
    detection = detector.detect(Image.new("RGB", size, "white"))
    assert detection.faces == ()
    assert "too small" in detection.notes[0]


def test_detect_grayscale_and_rgba_input(detector):
    for mode in ("L", "RGBA"):
        detection = detector.detect(astronaut().convert(mode))
        assert len(detection.faces) == 1, mode


def test_detect_face_cut_at_border_clamped(detector):
    x, y, w, h = ASTRONAUT_FACE_BOX
    # Cut the photo through the middle of the face, so half of it remains at the left edge.
    image = astronaut().crop((x + w // 3, 0, 512, 512))
    detection = detector.detect(image, min_confidence=0.5)
    for face in detection.faces:
        fx, fy, fw, fh = face.box
        assert fx >= 0
        assert fy >= 0
        assert fx + fw <= image.width
        assert fy + fh <= image.height


def test_detect_large_photo_maps_boxes_back(detector):
    # At 3072 px the search runs on a 1024 px copy; boxes must come back at full scale.
    big = astronaut().resize((3072, 3072), Image.Resampling.BICUBIC)
    detection = detector.detect(big)
    assert len(detection.faces) == 1
    expected = tuple(v * 6 for v in ASTRONAUT_FACE_BOX)
    assert iou(detection.faces[0].box, expected) > 0.85


def test_detect_max_faces_keeps_largest(detector):
    widths = (60, 80, 100, 120, 140)
    face = astronaut_face()
    canvas = Image.new("RGB", (sum(widths) + 20 * len(widths), 220), "white")
    left = 10
    for width in widths:
        canvas.paste(face.resize((width, round(width * face.height / face.width))), (left, 10))
        left += width + 20
    everything = detector.detect(canvas, max_faces=None)
    assert len(everything.faces) == 5
    limited = detector.detect(canvas, max_faces=2)
    assert limited.notes == ("5 faces found; only the 2 largest were kept",)
    largest_two = sorted(face.area for face in everything.faces)[-2:]
    assert sorted(face.area for face in limited.faces) == largest_two


@pytest.mark.slow
def test_detect_two_hundred_pasted_faces(detector):
    canvas = face_grid(20, 10, 60)
    detection = detector.detect(canvas, max_faces=None)
    assert len(detection.faces) == 200
    for face in detection.faces:
        x, y, w, h = face.box
        assert x >= 0
        assert x + w <= canvas.width
        assert y >= 0
        assert y + h <= canvas.height


def test_detect_images_of_different_sizes(detector):
    images = [
        astronaut(),
        astronaut().rotate(90, expand=True).resize((300, 300)),
        Image.new("RGB", (50, 700), "black"),
        astronaut().resize((1500, 900)),
    ]
    forward = [detector.detect(image) for image in images]
    backward = [detector.detect(image) for image in reversed(images)][::-1]
    # Each image's result depends on that image alone, whatever ran before it.
    assert forward == backward
    assert len(forward[0].faces) == 1
    assert forward[2].faces == ()
    assert len(forward[3].faces) == 1
    for image, result in zip(images, forward):
        for face in result.faces:
            x, y, w, h = face.box
            assert x + w <= image.width
            assert y + h <= image.height


def test_detect_rejects_bad_arguments(detector):
    with pytest.raises(ValueError, match="min_confidence"):
        detector.detect(astronaut(), min_confidence=1.5)
    with pytest.raises(ValueError, match="max_faces"):
        detector.detect(astronaut(), max_faces=0)


@pytest.mark.slow
def test_detect_shared_photos_match_reference_counts(detector):
    from fedcore.imageio import load_image

    photos = require_photos()
    mismatches = []
    for row in photo_index():
        image = load_image(photos / row["file"]).image
        found = len(detector.detect(image, max_faces=None).faces)
        if found != int(row["faces_reference"]):
            mismatches.append((row["file"], found, int(row["faces_reference"])))
    assert mismatches == []
