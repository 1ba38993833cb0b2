"""Immutable result types of the pipeline, with their JSON form.

These types import nothing heavy, so the history store and the dashboard can
use them without loading PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fedcore.constants import CLASSES

KEYPOINT_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class DetectedFace:
    """One face found by the detector, in full-resolution pixel coordinates.

    ``box`` is (x, y, width, height) in whole pixels, clamped to the image.
    ``keypoints`` contains one (x, y) pair per name in KEYPOINT_NAMES, in that order.
    """

    box: tuple[int, int, int, int]
    confidence: float
    keypoints: tuple[tuple[float, float], ...]

    def keypoint(self, name: str) -> tuple[float, float]:
        return self.keypoints[KEYPOINT_NAMES.index(name)]

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    def keypoints_json(self) -> dict[str, list[float]]:
        return {name: [round(x, 1), round(y, 1)] for name, (x, y) in zip(KEYPOINT_NAMES, self.keypoints)}


@dataclass(frozen=True)
class FaceResult:
    """A detected face with its expression estimate.

    ``number`` counts faces from 1, left to right. ``probabilities`` follows the
    order of CLASSES and is None when the face could not be classified (for
    example when the network produced non-finite values).
    """

    number: int
    detection: DetectedFace
    probabilities: tuple[float, ...] | None
    uncertain: bool = False

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.detection.box

    @property
    def confidence(self) -> float:
        return self.detection.confidence

    @property
    def classified(self) -> bool:
        return self.probabilities is not None

    @property
    def label(self) -> str | None:
        if self.probabilities is None:
            return None
        return CLASSES[max(range(len(CLASSES)), key=self.probabilities.__getitem__)]

    @property
    def top_probability(self) -> float | None:
        return None if self.probabilities is None else max(self.probabilities)

    def probability_map(self) -> dict[str, float] | None:
        if self.probabilities is None:
            return None
        return dict(zip(CLASSES, self.probabilities))

    def to_json(self) -> dict[str, Any]:
        probabilities = self.probability_map()
        return {
            "number": self.number,
            "box": list(self.box),
            "confidence": round(self.confidence, 4),
            "keypoints": self.detection.keypoints_json(),
            "probabilities": None if probabilities is None else {k: round(v, 4) for k, v in probabilities.items()},
            "label": self.label,
            "uncertain": self.uncertain,
        }


@dataclass(frozen=True)
class ErrorInfo:
    """Reason an image produced no result: ``kind`` is a short code such as 'corrupt' or 'too_large'."""

    kind: str
    message: str


@dataclass(frozen=True)
class ImageResult:
    """Everything the pipeline found in one image."""

    source: str | None
    width: int
    height: int
    faces: tuple[FaceResult, ...] = ()
    notes: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    model_name: str = ""
    model_version: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.source,
            "width": self.width,
            "height": self.height,
            "faces": [face.to_json() for face in self.faces],
            "notes": list(self.notes),
            "error": None if self.error is None else {"kind": self.error.kind, "message": self.error.message},
        }


def probabilities_are_valid(values: tuple[float, ...] | list[float]) -> bool:
    """True when there is one finite, non-negative value per class and they sum to 1."""
    if len(values) != len(CLASSES):
        return False
    if not all(math.isfinite(v) and v >= 0 for v in values):
        return False
    return abs(sum(values) - 1.0) < 1e-3
