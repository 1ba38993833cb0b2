"""Face preparation: crop size and mode from metadata, eye levelling, padding at the border."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fedcore.align import crop_face, eye_angle, prepare_faces, whole_image_face
from fedcore.checkpoint import ModelInfo
from fedcore.results import DetectedFace

GRAY_INFO = ModelInfo(name="test", version="1", input_size=48, color_mode="L", mean=(0.5,), std=(0.25,), crop_margin=0.1)
RGB_INFO = dataclasses.replace(GRAY_INFO, input_size=64, color_mode="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def face_at(box, left_eye, right_eye) -> DetectedFace:
    x, y, w, h = box
    nose = (x + w / 2, y + h / 2)
    mouth = ((x + w * 0.35, y + h * 0.75), (x + w * 0.65, y + h * 0.75))
    return DetectedFace(box=box, confidence=0.99, keypoints=(left_eye, right_eye, nose, *mouth))


def dark_blob_rows(crop: np.ndarray, threshold: int = 100) -> list[float]:
    """Return the mean row of the dark pixels in the left and right halves of a gray crop."""
    half = crop.shape[1] // 2
    rows = []
    for part in (crop[:, :half], crop[:, half:]):
        ys, _ = np.nonzero(part < threshold)
        rows.append(float(ys.mean()))
    return rows


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [((0, 0), (10, 0), 0.0), ((0, 0), (10, 10), 45.0), ((0, 0), (10, -10), -45.0), ((0, 0), (10, 20), 0.0)],
)
def test_eye_angle_values(left, right, expected):
    face = face_at((0, 0, 20, 20), left, right)
    assert eye_angle(face) == pytest.approx(expected)


def test_crop_face_size_and_mode_from_metadata():
    image = Image.new("RGB", (200, 200), (200, 100, 50))
    face = face_at((50, 50, 100, 100), (80, 90), (120, 90))
    gray = crop_face(image, face, GRAY_INFO)
    color = crop_face(image, face, RGB_INFO)
    assert (gray.size, gray.mode) == ((48, 48), "L")
    assert (color.size, color.mode) == ((64, 64), "RGB")
    assert color.getpixel((32, 32)) == (200, 100, 50)


def test_crop_face_levels_tilted_eyes():
    image = Image.new("L", (400, 400), 255)
    draw = ImageDraw.Draw(image)
    # Two dark eyes 100 px apart on a line tilted by 30 degrees.
    left, right = (150.0, 170.0), (150 + 100 * np.cos(np.radians(30)), 170 + 100 * np.sin(np.radians(30)))
    for cx, cy in (left, right):
        draw.ellipse((cx - 8, cy - 8, cx + 8, cy + 8), fill=0)
    face = face_at((120, 120, 160, 160), left, right)
    crop = np.asarray(crop_face(image.convert("RGB"), face, GRAY_INFO))
    left_row, right_row = dark_blob_rows(crop)
    assert abs(left_row - right_row) < 1.0

    unlevelled = np.asarray(crop_face(image.convert("RGB"), face_at(face.box, (0, 0), (10, 0)), GRAY_INFO))
    left_row, right_row = dark_blob_rows(unlevelled)
    assert right_row - left_row > 5


def test_crop_face_border_repeats_edge_pixels():
    image = Image.new("RGB", (100, 100), (10, 200, 30))
    face = face_at((0, 0, 60, 60), (15, 20), (45, 20))
    crop = np.asarray(crop_face(image, face, RGB_INFO))
    assert (crop == (10, 200, 30)).all()


def test_crop_face_huge_photo_small_output():
    image = Image.new("RGB", (4000, 3000), (90, 90, 90))
    face = face_at((1000, 800, 1500, 1800), (1500, 1400), (2000, 1400))
    crop = crop_face(image, face, GRAY_INFO)
    assert crop.size == (48, 48)
    assert np.asarray(crop).min() == np.asarray(crop).max() == 90


def test_prepare_faces_batch_shapes():
    image = Image.new("RGB", (300, 300), "white")
    faces = [face_at((10, 10, 50, 50), (25, 25), (45, 25)), face_at((200, 150, 80, 90), (220, 180), (260, 180))]
    assert prepare_faces(image, faces, GRAY_INFO).shape == (2, 48, 48)
    assert prepare_faces(image, faces, RGB_INFO).shape == (2, 64, 64, 3)
    assert prepare_faces(image, [], GRAY_INFO).shape == (0, 48, 48)
    assert prepare_faces(image, faces, GRAY_INFO).dtype == np.uint8


def test_whole_image_face_resizes_without_alignment():
    image = Image.new("RGB", (30, 90), (0, 0, 255))
    crop = whole_image_face(image, GRAY_INFO)
    assert crop.size == (48, 48)
    assert crop.mode == "L"
    assert crop.getpixel((0, 0)) == round(0.114 * 255)
