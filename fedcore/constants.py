"""Named defaults shared by the pipeline, the trainer, the store and the dashboard."""

from __future__ import annotations

from pathlib import Path

# The 8 AffectNet expressions, in the fixed order of every probability vector.
CLASSES: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)

# One colour per class, shared by the dashboard charts and the annotated images.
CLASS_COLORS: dict[str, str] = {
    "neutral": "#7f7f7f",
    "happy": "#f2b701",
    "sad": "#3969ac",
    "surprise": "#11a579",
    "fear": "#7f3c8d",
    "disgust": "#80ba5a",
    "anger": "#e73f74",
    "contempt": "#e68310",
}

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
MODELS_DIR = PROJECT_DIR / "models"
DEFAULT_MODEL_NAME = "fed-vgg16-ferplus"
DEFAULT_CHECKPOINT = MODELS_DIR / f"{DEFAULT_MODEL_NAME}.safetensors"

# Image loading.
DEFAULT_MAX_PIXELS = 50_000_000

# Face detection.
DEFAULT_MIN_CONFIDENCE = 0.9
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_MAX_FACES = 50
# Photos whose longer side exceeds this are detected on a downscaled copy.
DEFAULT_DETECT_MAX_SIDE = 1024

# Classification. A face is flagged uncertain when its top probability is
# below the first value or less than the second value above the runner-up.
UNCERTAIN_MIN_TOP = 0.5
UNCERTAIN_MIN_MARGIN = 0.15
