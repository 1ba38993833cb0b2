"""Shared helpers for tests: real face images and the location of the optional shared data."""

from __future__ import annotations

import csv
import io
import os
from functools import lru_cache
from pathlib import Path

import pytest
from PIL import Image

PROJECT_DIR = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FED_SHARED_DATA", PROJECT_DIR.parent / "shared" / "data"))
PHOTOS_DIR = SHARED_DATA / "photos"
FERPLUS_DIR = SHARED_DATA / "ferplus"
WIDER_DIR = SHARED_DATA / "wider-face-val"

# skimage.data.astronaut(): 512x512 RGB portrait with exactly one frontal face.
ASTRONAUT_FACE_BOX = (181, 62, 87, 111)


@lru_cache(maxsize=1)
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def astronaut_face(margin: float = 0.3) -> Image.Image:
    """The astronaut's face with ``margin`` of its box added on every side."""
    x, y, w, h = ASTRONAUT_FACE_BOX
    dx, dy = round(w * margin), round(h * margin)
    return astronaut().crop((x - dx, y - dy, x + w + dx, y + h + dy))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


def require_photos() -> Path:
    if not (PHOTOS_DIR / "index.csv").is_file():
        pytest.skip(f"shared photos not found at {PHOTOS_DIR}")
    return PHOTOS_DIR


def photo_index() -> list[dict[str, str]]:
    with (require_photos() / "index.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter_w = max(0, min(ax2, bx2) - max(a[0], b[0]))
    inter_h = max(0, min(ay2, by2) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union else 0.0
