"""Classifier checkpoints: a safetensors weights file beside a JSON metadata file.

The metadata records everything the pipeline needs to feed the network the same
input it was trained on (input size, colour mode, normalisation, crop margin)
and how to read its output (class order, calibration temperature, whether
to average each face's logits with its mirror image's).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedcore.constants import CLASSES
from fedcore.errors import CheckpointError
from fedcore.model import ARCHITECTURE, VGG16, build_vgg16

logger = logging.getLogger(__name__)

METADATA_VERSION = 1
COLOR_MODES = ("L", "RGB")


@dataclass(frozen=True)
class ModelInfo:
    """Metadata stored beside a classifier's weights."""

    name: str
    version: str
    architecture: str = ARCHITECTURE
    classes: tuple[str, ...] = CLASSES
    input_size: int = 48
    color_mode: str = "L"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    crop_margin: float = 0.05
    hidden: int = 512
    temperature: float = 1.0
    # Whether the pipeline averages each face's logits with its mirror image's.
    # Older checkpoints lack the field and were calibrated without it.
    flip_average: bool = False
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    metadata_version: int = METADATA_VERSION

    @property
    def in_channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "metadata") -> ModelInfo:
        known = set(cls.__dataclass_fields__)
        missing = {"name", "version", "classes", "input_size", "color_mode", "mean", "std"} - set(data)
        if missing:
            raise CheckpointError(f"{source}: missing metadata fields {sorted(missing)}")
        values = {key: value for key, value in data.items() if key in known}
        # A hand-edited file can hold a number where a list belongs, or a string where a number belongs.
        try:
            for key in ("classes", "mean", "std"):
                values[key] = tuple(values[key])
            info = cls(**values)
            info.validate(source=source)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: a metadata field has the wrong type ({exc}). Compare the file with one that save_checkpoint wrote."
            ) from exc
        return info

    def validate(self, *, source: str = "metadata") -> None:
        """Raise CheckpointError when a field has a value the pipeline cannot use."""
        if self.architecture != ARCHITECTURE:
            raise CheckpointError(
                f"{source}: architecture {self.architecture!r} is not supported; expected {ARCHITECTURE!r}"
            )
        if tuple(self.classes) != CLASSES:
            raise CheckpointError(
                f"{source}: classes {list(self.classes)} differ from the required order {list(CLASSES)}"
            )
        if self.color_mode not in COLOR_MODES:
            raise CheckpointError(f"{source}: color_mode {self.color_mode!r} must be one of {COLOR_MODES}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise CheckpointError(
                f"{source}: mean and std need {self.in_channels} values for color_mode {self.color_mode!r}"
            )
        if any(not math.isfinite(s) or s <= 0 for s in self.std):
            raise CheckpointError(f"{source}: std values must be positive, got {list(self.std)}")
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise CheckpointError(f"{source}: hidden must be a positive integer, got {self.hidden!r}")
        if not 16 <= self.input_size <= 512:
            raise CheckpointError(f"{source}: input_size {self.input_size} is outside 16..512")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise CheckpointError(f"{source}: temperature must be positive, got {self.temperature}")
        if not isinstance(self.flip_average, bool):
            raise CheckpointError(f"{source}: flip_average must be true or false, got {self.flip_average!r}")
        if not 0 <= self.crop_margin <= 1:
            raise CheckpointError(f"{source}: crop_margin {self.crop_margin} is outside 0..1")


def metadata_path(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(
    model: VGG16, info: ModelInfo, path: str | Path, *, half: bool = False
) -> Path:
    """Write ``path`` (safetensors) and the metadata JSON beside it; return the weights path.

    ``half=True`` stores floating-point tensors as float16, which halves the
    file; loading converts them back to float32.
    """
    from safetensors.torch import save_file

    info.validate(source=str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor
    tmp_weights = path.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp_weights), metadata={"format": "pt", "name": info.name})
    tmp_meta = metadata_path(path).with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(info.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp_weights.replace(path)
    tmp_meta.replace(metadata_path(path))
    return path


def read_metadata(path: str | Path) -> ModelInfo:
    """Read and validate the metadata JSON of the weights file ``path``."""
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        raise CheckpointError(f"model metadata not found: {meta_file} (it must sit beside the weights file)")
    try:
        data = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"model metadata {meta_file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"model metadata {meta_file} must be a JSON object")
    return ModelInfo.from_json(data, source=str(meta_file))


def load_checkpoint(path: str | Path) -> tuple[VGG16, ModelInfo]:
    """Load weights and metadata, check that they match, and return the model in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model weights not found: {path}")
    info = read_metadata(path)
    try:
        state: dict[str, Any] = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"model weights {path} cannot be read as safetensors: {exc}") from exc

    model = build_vgg16(num_classes=len(info.classes), in_channels=info.in_channels, hidden=info.hidden)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"model weights {path} do not match the metadata's architecture: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tensor.shape != own[key].shape:
            raise CheckpointError(
                f"model weights {path}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(own[key].shape)}"
            )
        if tensor.is_floating_point():
            state[key] = tensor.float()
            if not torch.isfinite(state[key]).all():
                raise CheckpointError(f"model weights {path}: tensor {key} contains NaN or infinity")
    model.load_state_dict(state)
    model.eval()
    return model, info
