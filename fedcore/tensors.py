"""Conversion of uint8 face arrays into normalised network input, and batched inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def to_input_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Turn uint8 images, (N, H, W) gray or (N, H, W, 3) RGB, into a normalised float NCHW tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    elif tensor.ndim == 4:
        tensor = tensor.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, 3), got {tuple(images.shape)}")
    return normalize(tensor.float().div_(255.0), mean, std)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t


def autocast_context(device: torch.device, enabled: bool = True):
    """bfloat16 autocast on CPU and CUDA; a no-op elsewhere or when disabled."""
    if enabled and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def forward_logits(model: nn.Module, batch: torch.Tensor, *, flip_average: bool = False) -> torch.Tensor:
    """Return float32 logits for a normalised batch, averaged with its mirror image when ``flip_average``."""
    logits = model(batch).float()
    if flip_average:
        mirrored = batch.flip(-1).contiguous(memory_format=torch.channels_last)
        logits = (logits + model(mirrored).float()) / 2
    return logits


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    mixed_precision: bool = True,
    flip_average: bool = False,
) -> np.ndarray:
    """Return float32 logits (N, classes) for uint8 images, in batches, in eval mode.

    ``flip_average`` averages each image's logits with those of its mirror image.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for start in range(0, len(images), batch_size):
            batch = to_input_tensor(images[start : start + batch_size], mean, std).to(device)
            batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast_context(device, mixed_precision):
                logits = forward_logits(model, batch, flip_average=flip_average)
            outputs.append(logits.cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, getattr(model, "num_classes", 8)), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)
