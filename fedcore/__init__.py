"""FED core: face detection, expression estimation, training and evaluation.

``fedcore.analyze(image)`` is the main entry point. Heavy modules (PyTorch,
facenet-pytorch) load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import Any

from fedcore.constants import CLASSES
from fedcore.results import DetectedFace, ErrorInfo, FaceResult, ImageResult

__all__ = ["CLASSES", "DetectedFace", "ErrorInfo", "FaceResult", "ImageResult", "analyze", "load_image"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "analyze":
        from fedcore.pipeline import analyze

        return analyze
    if name == "load_image":
        from fedcore.imageio import load_image

        return load_image
    raise AttributeError(f"module 'fedcore' has no attribute {name!r}")
