"""Tests for fedcore.tensors and the classifier's mirror-image averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedcore.checkpoint import ModelInfo
from fedcore.classify import ExpressionClassifier
from fedcore.model import build_vgg16
from fedcore.tensors import predict_logits, to_input_tensor

MEAN, STD = (0.5,), (0.25,)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A small-head VGG-16 with random weights whose outputs differ between an image and its mirror."""
    torch.manual_seed(0)
    network = build_vgg16(hidden=16)
    generator = torch.Generator().manual_seed(1)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    with torch.no_grad():
        # Freshly initialised logits are about 1e-5, so scale them to the order of a trained model's.
        network.classifier[-1].weight.mul_(1e5)
    return network.eval()


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (5, 48, 48), dtype=np.uint8)


def plain(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    return predict_logits(model, images, mean=MEAN, std=STD, mixed_precision=False)


def averaged(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    return predict_logits(model, images, mean=MEAN, std=STD, mixed_precision=False, flip_average=True)


def test_input_tensor_normalised_nchw() -> None:
    images = np.array([[[0, 255], [128, 64]]], dtype=np.uint8)
    tensor = to_input_tensor(images, MEAN, STD)
    assert tensor.shape == (1, 1, 2, 2)
    expected = (torch.tensor([[0, 255], [128, 64]], dtype=torch.float32) / 255 - 0.5) / 0.25
    torch.testing.assert_close(tensor[0, 0], expected)


def test_input_tensor_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected images of shape \(N, H, W\) or \(N, H, W, 3\), got \(48,\)"):
        to_input_tensor(np.zeros(48, dtype=np.uint8), MEAN, STD)


def test_flip_average_equals_view_mean(model: torch.nn.Module, faces: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    expected = (plain(model, faces) + plain(model, mirrored)) / 2
    np.testing.assert_allclose(averaged(model, faces), expected, rtol=0, atol=1e-5)


def test_flip_average_mirror_scores_same(model: torch.nn.Module, faces: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    # Without averaging, the random network gives the two different logits. With it, their logits match.
    assert np.abs(plain(model, faces) - plain(model, mirrored)).max() > 1e-3
    np.testing.assert_allclose(averaged(model, faces), averaged(model, mirrored), rtol=0, atol=1e-5)


def test_flip_average_batch_size_invariant(model: torch.nn.Module, faces: np.ndarray) -> None:
    batched = predict_logits(model, faces, mean=MEAN, std=STD, mixed_precision=False, flip_average=True, batch_size=2)
    np.testing.assert_allclose(batched, averaged(model, faces), rtol=0, atol=1e-5)


@pytest.mark.parametrize("flip_average", [False, True])
def test_classifier_follows_metadata(model: torch.nn.Module, faces: np.ndarray, flip_average: bool) -> None:
    info = ModelInfo(name="test-model", version="1.0", hidden=16, mean=MEAN, std=STD, flip_average=flip_average)
    classifier = ExpressionClassifier(model, info)
    expected = averaged(model, faces) if flip_average else plain(model, faces)
    np.testing.assert_allclose(classifier.logits(faces), expected, rtol=0, atol=1e-5)
