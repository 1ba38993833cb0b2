"""Face preparation: crop each detected face, level its eyes and make the classifier's input.

Size, colour mode and crop margin come from the classifier's metadata, so the
pipeline feeds the network what it was trained on. Normalisation happens in
fedcore.tensors with the same metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from fedcore.checkpoint import ModelInfo
from fedcore.results import DetectedFace

# Eye-line angles beyond this are treated as detector noise and not corrected.
MAX_LEVELING_DEGREES = 45.0


def eye_angle(face: DetectedFace) -> float:
    """Angle in degrees of the line from the left to the right eye (image coordinates, y down)."""
    if len(face.keypoints) < 2:
        return 0.0
    (lx, ly), (rx, ry) = face.keypoints[0], face.keypoints[1]
    if rx - lx == 0 and ry - ly == 0:
        return 0.0
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    return angle if abs(angle) <= MAX_LEVELING_DEGREES else 0.0


def crop_face(image: Image.Image, face: DetectedFace, info: ModelInfo) -> Image.Image:
    """Return the face as an upright square of ``info.input_size`` pixels in ``info.color_mode``.

    The square is centred on the box, its side is the box's longer side plus
    ``info.crop_margin`` of it on each side, and it is rotated so the eyes lie
    on a horizontal line. Parts outside the photo repeat the edge pixels.
    """
    x, y, w, h = face.box
    center_x, center_y = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * info.crop_margin)
    angle = math.radians(eye_angle(face))
    size = info.input_size

    # Cut an axis-aligned region that contains the square at any rotation,
    # shrunk with antialiasing so the rotation below never samples a much larger image.
    half = math.ceil(side * math.sqrt(2) / 2) + 1
    target = min(2 * half, max(1, round(4 * size * math.sqrt(2))))
    factor = target / (2 * half)
    region = _crop_with_edge_padding(image, round(center_x) - half, round(center_y) - half, 2 * half, target)

    # Output pixel (u, v) samples the region at centre + R(angle) * (u - size/2, v - size/2) * step.
    step = side * factor / size
    cos, sin = math.cos(angle) * step, math.sin(angle) * step
    center = region.width / 2
    offset_x = center - cos * size / 2 + sin * size / 2
    offset_y = center - sin * size / 2 - cos * size / 2
    crop = region.transform(
        (size, size), Image.Transform.AFFINE, (cos, -sin, offset_x, sin, cos, offset_y), resample=Image.Resampling.BILINEAR
    )
    return crop.convert(info.color_mode)


def whole_image_face(image: Image.Image, info: ModelInfo) -> Image.Image:
    """Resize an already-cropped face image to the classifier input, without alignment."""
    square = image.resize((info.input_size, info.input_size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return square.convert(info.color_mode)


def prepare_faces(image: Image.Image, faces: Sequence[DetectedFace], info: ModelInfo) -> np.ndarray:
    """Return uint8 classifier input for every face: (N, S, S) for grayscale, (N, S, S, 3) for RGB."""
    size = info.input_size
    shape = (len(faces), size, size) if info.color_mode == "L" else (len(faces), size, size, 3)
    batch = np.empty(shape, dtype=np.uint8)
    for i, face in enumerate(faces):
        batch[i] = np.asarray(crop_face(image, face, info))
    return batch


def _crop_with_edge_padding(image: Image.Image, left: int, top: int, side: int, out_side: int) -> Image.Image:
    """Crop a square that may reach past the image and scale it to ``out_side`` pixels.

    Outside pixels repeat the nearest edge pixel. The part inside the image is
    scaled before padding, so a large face never costs a full-size padded copy.
    """
    width, height = image.size
    inner = (max(0, left), max(0, top), min(width, left + side), min(height, top + side))
    if inner[0] >= inner[2] or inner[1] >= inner[3]:
        # The region misses the image entirely; fall back to the nearest pixel row and column.
        inner = (
            min(max(0, left), width - 1), min(max(0, top), height - 1),
            min(max(0, left), width - 1) + 1, min(max(0, top), height - 1) + 1,
        )  # fmt: skip
    region = image.crop(inner)
    scale = out_side / side
    if out_side != side:
        scaled = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
        region = region.resize(scaled, Image.Resampling.BOX)
    pixels = np.asarray(region)
    pad_before_x, pad_before_y = round((inner[0] - left) * scale), round((inner[1] - top) * scale)
    pad_after_x = out_side - pad_before_x - pixels.shape[1]
    pad_after_y = out_side - pad_before_y - pixels.shape[0]
    padding = [(max(0, pad_before_y), max(0, pad_after_y)), (max(0, pad_before_x), max(0, pad_after_x))]
    padding += [(0, 0)] * (pixels.ndim - 2)
    padded = np.pad(pixels, padding, mode="edge")
    return Image.fromarray(padded[:out_side, :out_side])
