"""Drawing of boxes, face numbers, labels and confidences on a copy of the photo."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from fedcore.constants import CLASS_COLORS
from fedcore.results import FaceResult, ImageResult

UNCLASSIFIED_COLOR = "#d62728"


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow 10.1+ ships a scalable default font; older ones fall back to a fixed bitmap.
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def face_caption(face: FaceResult) -> str:
    if face.probabilities is None:
        return f"#{face.number} unclassified"
    caption = f"#{face.number} {face.label} {face.top_probability:.0%}"
    return caption + " (uncertain)" if face.uncertain else caption


def draw_annotations(image: Image.Image, result: ImageResult, *, max_side: int | None = None) -> Image.Image:
    """Return an RGB copy of ``image`` with each face's box, number, top expression and probability.

    With ``max_side``, the copy is first shrunk so its longer side is at most
    that many pixels, and the boxes are scaled to match. Line width and text
    size scale with the copy, so labels stay legible on a 427x240 frame and on
    a 6000-pixel photo alike.
    """
    canvas = image if image.mode == "RGB" else image.convert("RGB")
    scale = 1.0
    if max_side is not None and max(canvas.size) > max_side:
        scale = max_side / max(canvas.size)
        size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
        canvas = canvas.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    elif canvas is image:
        # Draw on a copy: the caller's image stays as it was.
        canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    longer_side = max(canvas.size)
    line_width = max(2, round(longer_side / 400))
    font = _font(max(12, round(longer_side / 45)))

    boxes = [tuple(round(value * scale) for value in face.box) for face in result.faces]
    colors = [CLASS_COLORS.get(face.label or "", UNCLASSIFIED_COLOR) for face in result.faces]
    for (x, y, w, h), color in zip(boxes, colors):
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=color, width=line_width)

    # Captions go on top of all boxes, each where it covers no earlier caption.
    placed: list[tuple[int, int, int, int]] = []
    pad = max(2, line_width)
    for face, (x, y, w, h), color in zip(result.faces, boxes, colors):
        caption = face_caption(face)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
        label_x = min(max(0, x), max(0, canvas.width - label_w))
        label_y = _caption_row(y, h, label_w, label_h, label_x, canvas.height, placed)
        placed.append((label_x, label_y, label_x + label_w, label_y + label_h))
        draw.rectangle((label_x, label_y, label_x + label_w, label_y + label_h), fill=color)
        draw.text((label_x + pad - left, label_y + pad - top), caption, fill="white", font=font)
    return canvas


def _caption_row(
    y: int, h: int, label_w: int, label_h: int, label_x: int, height: int, placed: list[tuple[int, int, int, int]]
) -> int:
    """Return the top of a face's caption: above its box, below it, or inside its top edge.

    The first of these rows that fits in the image and covers no earlier
    caption wins. When none does, the caption goes above the box if there is
    room, else inside its top edge.
    """
    above, below, inside = y - label_h, y + h, y
    for row in (above, below, inside):
        if row < 0 or row + label_h > height:
            continue
        rectangle = (label_x, row, label_x + label_w, row + label_h)
        if not any(_overlaps(rectangle, other) for other in placed):
            return row
    return above if above >= 0 else inside


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def face_thumbnail(image: Image.Image, face: FaceResult, *, size: int = 112) -> Image.Image:
    """Return a square RGB thumbnail of the face box with a 10% margin, ``size`` pixels wide."""
    x, y, w, h = face.box
    side = max(w, h) * 1.2
    center_x, center_y = x + w / 2, y + h / 2
    box = (
        max(0, round(center_x - side / 2)), max(0, round(center_y - side / 2)),
        min(image.width, round(center_x + side / 2)), min(image.height, round(center_y + side / 2)),
    )  # fmt: skip
    crop = image.crop(box).convert("RGB")
    crop.thumbnail((size, size), Image.Resampling.LANCZOS)
    square = Image.new("RGB", (size, size), "white")
    square.paste(crop, ((size - crop.width) // 2, (size - crop.height) // 2))
    return square
