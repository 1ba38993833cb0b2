"""Checks of user input to the history store. Each raises StoreError with the fix in its message."""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

from fedcore.errors import StoreError
from fedcore.results import FaceResult, probabilities_are_valid
from fedcore.store.models import (
    CAPTURE_SOURCES,
    CODE_MAX_LENGTH,
    DISPLAY_NAME_MAX_LENGTH,
    MODEL_FIELD_MAX_LENGTH,
)

CODE_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{CODE_MAX_LENGTH}}}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
# Thumbnails are small face crops. Larger images are rejected so that no full
# photo ends up in the database through this path.
MAX_THUMBNAIL_SIDE = 256
MAX_THUMBNAIL_BYTES = 256 * 1024
THUMBNAIL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
# Bidirectional embedding, override and isolate controls, which can make a
# name display as different text.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def validate_code(code: object) -> str:
    # NOTE: codes are case-sensitive, so "P-1" and "p-1" name two different people.
    if not isinstance(code, str) or CODE_PATTERN.fullmatch(code) is None:
        raise StoreError(
            f"invalid person code {code!r}: use 1 to {CODE_MAX_LENGTH} characters from "
            "letters A-Z a-z, digits, '-' and '_', for example 'P-0042'"
        )
    return code


def validate_display_name(display_name: str | None) -> str | None:
    """Return the trimmed name, or None for a missing or blank one."""
    if display_name is None:
        return None
    if not isinstance(display_name, str):
        raise StoreError(f"invalid display name {display_name!r}: expected text or nothing")
    name = unicodedata.normalize("NFC", display_name).strip()
    if not name:
        return None
    if len(name) > DISPLAY_NAME_MAX_LENGTH:
        raise StoreError(
            f"display name has {len(name)} characters; the maximum is {DISPLAY_NAME_MAX_LENGTH}, so shorten it"
        )
    if any(_is_control(character) for character in name):
        raise StoreError(f"display name {name!r} contains control characters or line breaks; remove them")
    return name


def _is_control(character: str) -> bool:
    # Other format characters (category Cf) stay allowed: the zero-width joiner
    # is part of many emoji and of names in several scripts.
    return unicodedata.category(character) in ("Cc", "Zl", "Zp") or character in BIDI_CONTROLS


def require_aware(value: datetime, *, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise StoreError(f"{name} must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(
            f"{name} {value.isoformat()} has no time zone; pass a timezone-aware datetime, "
            "for example datetime.now(timezone.utc)"
        )
    return value


def validate_sha256(image_sha256: object) -> str:
    normalized = image_sha256.lower() if isinstance(image_sha256, str) else None
    if normalized is None or SHA256_PATTERN.fullmatch(normalized) is None:
        raise StoreError(
            f"invalid image_sha256 {image_sha256!r}: expected 64 hexadecimal digits, "
            "as returned by hashlib.sha256(image_bytes).hexdigest()"
        )
    return normalized


def validate_source(source: object) -> str:
    if source not in CAPTURE_SOURCES:
        raise StoreError(f"invalid capture source {source!r}; use one of {', '.join(CAPTURE_SOURCES)}")
    return str(source)


def validate_model_field(value: object, *, name: str) -> str:
    if not isinstance(value, str) or len(value) > MODEL_FIELD_MAX_LENGTH:
        raise StoreError(f"invalid {name} {value!r}: expected text of at most {MODEL_FIELD_MAX_LENGTH} characters")
    return value


def select_faces(faces: Sequence[FaceResult], face_numbers: Sequence[int] | None) -> list[FaceResult]:
    """Return the faces to save, in face-number order: all of them, or those named in ``face_numbers``."""
    by_number = {face.number: face for face in faces}
    if face_numbers is None:
        return [by_number[number] for number in sorted(by_number)]
    unknown = sorted(set(face_numbers) - set(by_number))
    if unknown:
        available = ", ".join(str(number) for number in sorted(by_number)) or "none"
        raise StoreError(
            f"face number(s) {', '.join(str(number) for number in unknown)} not in the result; available: {available}"
        )
    return [by_number[number] for number in sorted(set(face_numbers))]


def validate_face(face: FaceResult) -> None:
    """Reject a classified face whose values cannot be stored faithfully."""
    probabilities = face.probabilities
    if probabilities is None:
        return
    if not probabilities_are_valid(probabilities):
        raise StoreError(
            f"face {face.number} has invalid probabilities {list(probabilities)!r}: expected one finite value "
            "from 0 to 1 per class, summing to 1; nothing was saved, so analyse the image again"
        )
    x, y, width, height = face.box
    if min(x, y) < 0 or min(width, height) <= 0:
        raise StoreError(
            f"face {face.number} has an invalid box {face.box!r}: expected x, y >= 0 and width, height > 0"
        )
    if not (math.isfinite(face.confidence) and 0.0 <= face.confidence <= 1.0):
        raise StoreError(f"face {face.number} has an invalid detection confidence {face.confidence!r}: expected 0 to 1")
    if not all(math.isfinite(coordinate) for point in face.detection.keypoints for coordinate in point):
        raise StoreError(f"face {face.number} has non-finite keypoints {face.detection.keypoints!r}")


def thumbnail_media_type(face_number: int, data: object) -> str:
    """Check that ``data`` is a small PNG or JPEG image and return its media type."""
    # Pillow is only needed when thumbnails are stored, so it is imported here.
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise StoreError(f"thumbnail of face {face_number} must be non-empty PNG or JPEG bytes")
    if len(data) > MAX_THUMBNAIL_BYTES:
        raise StoreError(
            f"thumbnail of face {face_number} has {len(data)} bytes; the maximum is {MAX_THUMBNAIL_BYTES}, "
            "so pass a smaller face crop"
        )
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            image_format = image.format
            size = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise StoreError(f"thumbnail of face {face_number} is not a readable image: {error}") from error
    if image_format not in THUMBNAIL_FORMATS:
        raise StoreError(f"thumbnail of face {face_number} is {image_format}; use PNG or JPEG")
    if max(size) > MAX_THUMBNAIL_SIDE:
        raise StoreError(
            f"thumbnail of face {face_number} is {size[0]}x{size[1]} pixels; the maximum side is "
            f"{MAX_THUMBNAIL_SIDE}, so pass a face crop, never the full image"
        )
    return THUMBNAIL_FORMATS[image_format]
