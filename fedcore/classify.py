"""Expression classifier: a loaded checkpoint that turns face crops into calibrated probabilities."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedcore.checkpoint import ModelInfo, load_checkpoint
from fedcore.constants import DEFAULT_CHECKPOINT, UNCERTAIN_MIN_MARGIN, UNCERTAIN_MIN_TOP
from fedcore.metrics import softmax
from fedcore.model import VGG16
from fedcore.results import probabilities_are_valid
from fedcore.tensors import forward_logits, to_input_tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Class probabilities for one face, or None when the network output was not usable."""

    probabilities: tuple[float, ...] | None
    uncertain: bool


def is_uncertain(
    probabilities: tuple[float, ...], *, min_top: float = UNCERTAIN_MIN_TOP, min_margin: float = UNCERTAIN_MIN_MARGIN
) -> bool:
    """True when the top probability is below ``min_top`` or within ``min_margin`` of the runner-up."""
    ranked = sorted(probabilities, reverse=True)
    return ranked[0] < min_top or ranked[0] - ranked[1] < min_margin


class ExpressionClassifier:
    """A VGG-16 checkpoint in inference mode, with its metadata and calibration temperature."""

    def __init__(self, model: VGG16, info: ModelInfo, *, device: str = "cpu") -> None:
        # channels_last: the same results, and max-pooling is faster in this layout on the CPU.
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        self.info = info
        self.device = torch.device(device)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CHECKPOINT, *, device: str = "cpu") -> ExpressionClassifier:
        model, info = load_checkpoint(path)
        logger.info("loaded expression model %s %s from %s", info.name, info.version, path)
        return cls(model, info, device=device)

    def logits(self, faces: np.ndarray) -> np.ndarray:
        """Return uncalibrated logits (N, 8) for uint8 face crops prepared with this model's metadata.

        Checkpoints with ``flip_average`` average each face's logits with its mirror image's.
        """
        if len(faces) == 0:
            return np.zeros((0, len(self.info.classes)), dtype=np.float32)
        batch = to_input_tensor(faces, self.info.mean, self.info.std).to(self.device, memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            return forward_logits(self.model, batch, flip_average=self.info.flip_average).cpu().numpy()

    def predict(self, faces: np.ndarray) -> list[Prediction]:
        """Classify all faces in one batch and apply the calibration temperature."""
        # Rows with NaN or infinite logits come out non-finite and are marked unclassified.
        with np.errstate(invalid="ignore", over="ignore"):
            rows = softmax(self.logits(faces), self.info.temperature)
        predictions = []
        for row in rows:
            probabilities = tuple(float(v) for v in row)
            if not probabilities_are_valid(probabilities):
                predictions.append(Prediction(probabilities=None, uncertain=True))
                continue
            predictions.append(Prediction(probabilities=probabilities, uncertain=is_uncertain(probabilities)))
        return predictions
