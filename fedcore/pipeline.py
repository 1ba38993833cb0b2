"""The analysis pipeline: image in, faces with boxes, keypoints and expression probabilities out."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.align import prepare_faces, whole_image_face
from fedcore.classify import ExpressionClassifier
from fedcore.constants import (
    DEFAULT_CHECKPOINT,
    DEFAULT_DETECT_MAX_SIDE,
    DEFAULT_MAX_FACES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_FACE_SIZE,
)
from fedcore.detect import FaceDetector
from fedcore.errors import ImageLoadError
from fedcore.imageio import LoadedImage, load_image
from fedcore.results import DetectedFace, ErrorInfo, FaceResult, ImageResult

logger = logging.getLogger(__name__)


class Pipeline:
    """A face detector and an expression classifier, loaded once and shared between threads.

    Arguments:
        checkpoint: classifier weights (.safetensors with its .json beside it);
            default the model shipped in models/.
        min_face_size: smallest face side to detect, in pixels (default 20).
        detect_max_side: detect on a copy downscaled to this longer side (default 1024).
        max_pixels: reject images above this many pixels (default 50 million).
        device: torch device for both networks (default "cpu").
    """

    def __init__(
        self,
        *,
        checkpoint: str | Path = DEFAULT_CHECKPOINT,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        detect_max_side: int = DEFAULT_DETECT_MAX_SIDE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
    ) -> None:
        self.classifier = ExpressionClassifier.load(checkpoint, device=device)
        self.detector = FaceDetector(min_face_size=min_face_size, detect_max_side=detect_max_side, device=device)
        self.max_pixels = max_pixels

    @property
    def model_name(self) -> str:
        return self.classifier.info.name

    @property
    def model_version(self) -> str:
        return self.classifier.info.version

    def load(self, image: Any, *, name: str | None = None) -> LoadedImage:
        """Load any supported input with this pipeline's pixel limit; raises ImageLoadError."""
        if isinstance(image, LoadedImage):
            return image
        return load_image(image, name=name, max_pixels=self.max_pixels)

    def analyze(
        self,
        image: Any,
        *,
        name: str | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        max_faces: int | None = DEFAULT_MAX_FACES,
        detect: bool = True,
    ) -> ImageResult:
        """Detect and classify every face in ``image``.

        ``image`` is a path, bytes, a binary file object, a PIL image, an RGB
        array or a LoadedImage. An unreadable image gives a result whose
        ``error`` describes the problem, because this method does not raise for bad input.
        With ``detect=False`` the whole image is treated as one face crop.
        """
        source = name if name is not None else _describe(image)
        try:
            loaded = self.load(image, name=name)
        except ImageLoadError as exc:
            return ImageResult(
                source=source, width=0, height=0, error=ErrorInfo(kind=exc.kind, message=str(exc)),
                model_name=self.model_name, model_version=self.model_version,
            )  # fmt: skip
        return self.analyze_loaded(loaded, min_confidence=min_confidence, max_faces=max_faces, detect=detect)

    def analyze_loaded(
        self,
        loaded: LoadedImage,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        max_faces: int | None = DEFAULT_MAX_FACES,
        detect: bool = True,
    ) -> ImageResult:
        image = loaded.image
        notes = list(loaded.notes)
        info = self.classifier.info

        if detect:
            detection = self.detector.detect(image, min_confidence=min_confidence, max_faces=max_faces)
            faces = list(detection.faces)
            notes += detection.notes
            crops = prepare_faces(image, faces, info)
        else:
            faces = [DetectedFace(box=(0, 0, image.width, image.height), confidence=1.0, keypoints=())]
            notes.append("face detection skipped: the whole image was classified as one face")
            crops = np.asarray(whole_image_face(image, info))[None]

        # Number faces left to right, as a reader scans the annotated image.
        order = sorted(range(len(faces)), key=lambda i: (faces[i].box[0], faces[i].box[1]))
        predictions = self.classifier.predict(crops[order]) if faces else []
        results = []
        for number, (index, prediction) in enumerate(zip(order, predictions), start=1):
            if prediction.probabilities is None:
                notes.append(f"face {number} could not be classified (the model output was not finite)")
                logger.warning("%s: face %d gave non-finite model output", loaded.source, number)
            results.append(
                FaceResult(
                    number=number, detection=faces[index],
                    probabilities=prediction.probabilities, uncertain=prediction.uncertain,
                )  # fmt: skip
            )
        return ImageResult(
            source=loaded.source, width=image.width, height=image.height, faces=tuple(results),
            notes=tuple(notes), model_name=self.model_name, model_version=self.model_version,
        )  # fmt: skip


def _describe(image: Any) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, LoadedImage):
        return image.source
    return getattr(image, "name", None) or type(image).__name__


_default_pipeline: Pipeline | None = None
_default_lock = threading.Lock()


def get_default_pipeline() -> Pipeline:
    """Return the process-wide pipeline with the shipped model, loading it on first use."""
    global _default_pipeline
    with _default_lock:
        if _default_pipeline is None:
            _default_pipeline = Pipeline()
        return _default_pipeline


def analyze(
    image: Any,
    *,
    name: str | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_faces: int | None = DEFAULT_MAX_FACES,
    detect: bool = True,
    pipeline: Pipeline | None = None,
) -> ImageResult:
    """Analyse one image with ``pipeline`` (default: the shared pipeline with the shipped model)."""
    pipeline = pipeline or get_default_pipeline()
    return pipeline.analyze(image, name=name, min_confidence=min_confidence, max_faces=max_faces, detect=detect)
