"""Annotated images: boxes in the class colour, captions inside the image at any size."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image, ImageColor

from fedcore.annotate import UNCLASSIFIED_COLOR, draw_annotations, face_caption, face_thumbnail
from fedcore.constants import CLASS_COLORS
from fedcore.results import DetectedFace, FaceResult, ImageResult

HAPPY = (0.05, 0.8, 0.05, 0.04, 0.02, 0.02, 0.01, 0.01)
KEYPOINTS = ((0.0, 0.0),) * 5


def result_with(box, probabilities=HAPPY, *, uncertain=False, size=(400, 300)) -> ImageResult:
    face = FaceResult(
        number=1, detection=DetectedFace(box=box, confidence=0.99, keypoints=KEYPOINTS),
        probabilities=probabilities, uncertain=uncertain,
    )  # fmt: skip
    return ImageResult(source="test", width=size[0], height=size[1], faces=(face,))


@pytest.mark.parametrize("size", [(427, 240), (4000, 3000), (60, 40)])
def test_draw_box_in_class_color(size):
    image = Image.new("RGB", size, "white")
    box = (size[0] // 4, size[1] // 2, size[0] // 2, size[1] // 3)
    annotated = draw_annotations(image, result_with(box, size=size))
    x, y, w, h = box
    assert annotated.size == size
    # The lower-left corner of the box is never covered by the caption.
    assert annotated.getpixel((x, y + h - 1)) == ImageColor.getrgb(CLASS_COLORS["happy"])
    assert image.getpixel((x, y + h - 1)) == (255, 255, 255)


def test_draw_max_side_scales_boxes():
    image = Image.new("RGB", (2000, 1000), "white")
    annotated = draw_annotations(image, result_with((800, 400, 400, 400), size=(2000, 1000)), max_side=1000)
    assert annotated.size == (1000, 500)
    # The box's lower-left corner moves from (800, 799) to (400, 399).
    assert annotated.getpixel((400, 399)) == ImageColor.getrgb(CLASS_COLORS["happy"])
    assert annotated.getpixel((350, 450)) == (255, 255, 255)


def test_draw_close_faces_captions_apart():
    image = Image.new("RGB", (400, 300), "white")
    faces = tuple(
        replace(result_with((x, 100, 40, 40)).faces[0], number=number) for number, x in ((1, 50), (2, 70))
    )
    annotated = draw_annotations(image, replace(result_with((0, 0, 1, 1)), faces=faces))
    happy = ImageColor.getrgb(CLASS_COLORS["happy"])
    # Face 1's caption sits above its box; face 2's would cover it there, so it goes below.
    assert annotated.getpixel((52, 97)) == happy
    assert annotated.getpixel((72, 142)) == happy
    assert annotated.getpixel((72, 97)) == happy
    assert annotated.getpixel((40, 142)) == (255, 255, 255)


def test_draw_face_at_top_edge_caption_inside():
    image = Image.new("RGB", (300, 200), "white")
    annotated = draw_annotations(image, result_with((250, 0, 50, 60)))
    # With no room above the box, the caption is drawn inside the image at its top.
    assert annotated.getpixel((299, 1)) == ImageColor.getrgb(CLASS_COLORS["happy"])


def test_draw_unclassified_face_red():
    image = Image.new("RGB", (300, 200), "white")
    annotated = draw_annotations(image, result_with((100, 100, 80, 80), probabilities=None))
    assert annotated.getpixel((100, 179)) == ImageColor.getrgb(UNCLASSIFIED_COLOR)


def test_face_caption_texts():
    assert face_caption(result_with((0, 0, 5, 5)).faces[0]) == "#1 happy 80%"
    assert face_caption(result_with((0, 0, 5, 5), uncertain=True).faces[0]) == "#1 happy 80% (uncertain)"
    assert face_caption(result_with((0, 0, 5, 5), probabilities=None).faces[0]) == "#1 unclassified"


def test_face_thumbnail_square_size():
    image = Image.new("RGB", (500, 300), "blue")
    face = result_with((480, 250, 20, 50)).faces[0]
    thumbnail = face_thumbnail(image, face, size=96)
    assert thumbnail.size == (96, 96)
    assert thumbnail.mode == "RGB"
