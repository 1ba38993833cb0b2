"""Face detection: the one adapter around MTCNN (facenet-pytorch's networks, fedcore.mtcnn's driver).

Everything above this module receives a list of DetectedFace (empty when there is
no face), never facenet-pytorch's None or object arrays.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fedcore.constants import (
    DEFAULT_DETECT_MAX_SIDE,
    DEFAULT_MAX_FACES,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_FACE_SIZE,
)
from fedcore.mtcnn import WINDOW as MTCNN_MIN_WINDOW, Cascade
from fedcore.results import DetectedFace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """Faces found in one image, plus notes a user should see (dropped faces, skipped search)."""

    faces: tuple[DetectedFace, ...]
    notes: tuple[str, ...] = ()


class FaceDetector:
    """MTCNN with fixed weights from the facenet-pytorch wheel, safe to share between threads.

    Arguments:
        min_face_size: smallest face side searched for, in full-resolution pixels (default 20).
        detect_max_side: photos whose longer side exceeds this many pixels are
            searched on a downscaled copy and the boxes mapped back (default 1024).
            Faces under 12 px in that copy are not found: 24 px in a 2048-px photo.
        device: torch device for the networks (default "cpu").
    """

    def __init__(
        self,
        *,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        detect_max_side: int = DEFAULT_DETECT_MAX_SIDE,
        device: str = "cpu",
    ) -> None:
        if min_face_size < MTCNN_MIN_WINDOW:
            raise ValueError(f"min_face_size must be at least {MTCNN_MIN_WINDOW} pixels, got {min_face_size}")
        self.min_face_size = min_face_size
        self.detect_max_side = detect_max_side
        # Stage thresholds stay at the published defaults. Our own minimum
        # confidence filters the final output.
        self._cascade = Cascade(device=device)
        # One image at a time: parallel calls would only compete for the same cores.
        self._lock = threading.Lock()

    def detect(
        self,
        image: Image.Image,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        max_faces: int | None = DEFAULT_MAX_FACES,
    ) -> Detection:
        """Find faces in an RGB image, largest first when ``max_faces`` drops some."""
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size

        scale = min(1.0, self.detect_max_side / max(width, height))
        search_min_face = max(MTCNN_MIN_WINDOW, math.floor(self.min_face_size * scale))
        # Below this size MTCNN has no scale to search at.
        if min(width, height) * scale < search_min_face:
            return Detection(faces=(), notes=(f"image too small to search for faces of {self.min_face_size} px or more",))

        search_image = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            search_image = image.resize(size, Image.Resampling.BOX)
            # Map back with the exact per-axis factors of the rounded size.
            scale_x, scale_y = width / size[0], height / size[1]
        else:
            scale_x = scale_y = 1.0

        boxes, probs, points = self._run_mtcnn(search_image, search_min_face)
        faces = []
        for box, prob, landmarks in zip(boxes, probs, points):
            if not np.isfinite(prob) or prob < min_confidence:
                continue
            face = _to_face(box, float(prob), landmarks, scale_x, scale_y, width, height)
            if face is not None:
                faces.append(face)

        notes: list[str] = []
        faces.sort(key=lambda face: face.area, reverse=True)
        if max_faces is not None and len(faces) > max_faces:
            notes.append(f"{len(faces)} faces found; only the {max_faces} largest were kept")
            faces = faces[:max_faces]
        return Detection(faces=tuple(faces), notes=tuple(notes))

    def _run_mtcnn(self, image: Image.Image, min_face_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            found = self._cascade(image, min_face_size)
        return found.boxes, found.scores, found.keypoints


def _to_face(
    box: np.ndarray,
    confidence: float,
    landmarks: np.ndarray,
    scale_x: float,
    scale_y: float,
    width: int,
    height: int,
) -> DetectedFace | None:
    """Scale an MTCNN (x1, y1, x2, y2) box to full resolution, clamp it to the image, convert to (x, y, w, h)."""
    if not np.isfinite(box).all() or not np.isfinite(landmarks).all():
        return None
    x1 = max(0, math.floor(box[0] * scale_x))
    y1 = max(0, math.floor(box[1] * scale_y))
    x2 = min(width, math.ceil(box[2] * scale_x))
    y2 = min(height, math.ceil(box[3] * scale_y))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    # Keypoints are not clamped: for a face cut off at the border they may lie
    # outside the image, and alignment needs their true positions.
    keypoints = tuple((float(x) * scale_x, float(y) * scale_y) for x, y in landmarks)
    return DetectedFace(box=(x1, y1, x2 - x1, y2 - y1), confidence=confidence, keypoints=keypoints)
