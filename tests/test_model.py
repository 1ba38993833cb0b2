"""Tests for fedcore.model: VGG-16 layout, shapes, gradients, learning and ImageNet feature loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from fedcore.constants import CLASSES
from fedcore.model import VGG16, build_vgg16, load_imagenet_features

VGG16_CONV_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
# 13 convolutions (weight, bias) and 13 batch norms (weight, bias, running mean, running variance, batch count).
VGG16_BN_FEATURE_TENSORS = 13 * 2 + 13 * 5


def modules_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, kind)]


@pytest.fixture(scope="module")
def model() -> VGG16:
    torch.manual_seed(0)
    return build_vgg16()


# Layout


def test_vgg16_conv_channel_sequence(model: VGG16) -> None:
    convolutions = modules_of(model, nn.Conv2d)
    assert len(convolutions) == 13
    assert [conv.out_channels for conv in convolutions] == VGG16_CONV_CHANNELS
    assert all(conv.kernel_size == (3, 3) and conv.padding == (1, 1) for conv in convolutions)


def test_vgg16_five_max_pools(model: VGG16) -> None:
    assert len(modules_of(model, nn.MaxPool2d)) == 5


def test_vgg16_three_linear_layers(model: VGG16) -> None:
    linears = modules_of(model, nn.Linear)
    assert len(linears) == 3
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(512, 512), (512, 512), (512, 8)]


def test_vgg16_batch_norm_per_conv(model: VGG16) -> None:
    norms = modules_of(model, nn.BatchNorm2d)
    assert [norm.num_features for norm in norms] == VGG16_CONV_CHANNELS


def test_build_honours_options() -> None:
    small = build_vgg16(num_classes=5, in_channels=3, hidden=32, dropout=0.0)
    linears = modules_of(small, nn.Linear)
    assert small.features[0].in_channels == 3
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(512, 32), (32, 32), (32, 5)]
    assert all(dropout.p == 0.0 for dropout in modules_of(small, nn.Dropout))


# Shapes and values


@pytest.mark.parametrize("size", [48, 64])
def test_forward_eight_outputs(model: VGG16, size: int) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 1, size, size))
    assert logits.shape == (2, len(CLASSES))
    assert not torch.isnan(logits).any()


def test_forward_rgb_model_224() -> None:
    rgb = build_vgg16(in_channels=3, hidden=16).eval()
    with torch.no_grad():
        logits = rgb(torch.rand(1, 3, 224, 224))
    assert logits.shape == (1, 8)
    assert torch.isfinite(logits).all()


def test_forward_features_width(model: VGG16) -> None:
    model.eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 1, 48, 48))
    assert features.shape == (2, 512)


def test_forward_rejects_rgb_for_gray(model: VGG16) -> None:
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, H, W\), got \(2, 3, 48, 48\)"):
        model(torch.rand(2, 3, 48, 48))


def test_forward_rejects_unbatched(model: VGG16) -> None:
    with pytest.raises(ValueError, match=r"got \(1, 48, 48\)"):
        model(torch.rand(1, 48, 48))


def test_build_rejects_two_channels() -> None:
    with pytest.raises(ValueError, match="in_channels must be 1 or 3, got 2"):
        build_vgg16(in_channels=2)


# Gradients and learning


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(1)
    fresh = build_vgg16(hidden=64)
    # Eval mode: batch statistics in train mode cancel a convolution's bias exactly,
    # so only running statistics let every bias receive a gradient.
    fresh.eval()
    logits = fresh(torch.rand(4, 1, 48, 48))
    F.cross_entropy(logits, torch.tensor([0, 3, 5, 7])).backward()
    for name, parameter in fresh.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_backward_train_mode_finite() -> None:
    torch.manual_seed(2)
    fresh = build_vgg16(hidden=64).train()
    F.cross_entropy(fresh(torch.rand(4, 1, 48, 48)), torch.tensor([1, 2, 4, 6])).backward()
    weights = [(name, p) for name, p in fresh.named_parameters() if not name.endswith("bias") or "classifier" in name]
    for name, parameter in weights:
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_overfits_random_labels() -> None:
    # 16 images keep this test near 20 s on two busy CPU cores. A head narrower than 512
    # loses too many units to ReLU and then needs several times more steps.
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(16, 1, 48, 48, generator=generator)
    labels = (torch.arange(16) % len(CLASSES))[torch.randperm(16, generator=generator)]
    network = build_vgg16(dropout=0.0).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    losses: list[float] = []
    accuracy = 0.0
    for _ in range(60):
        logits = network(images)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        loss = F.cross_entropy(logits, labels)
        losses.append(loss.item())
        if accuracy == 1.0:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert accuracy == 1.0
    assert losses[-1] < 0.5 * losses[0]


# ImageNet features


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    """Features of a real torchvision vgg16_bn with every tensor randomised, plus its last layer."""
    from torchvision.models import vgg16_bn

    torch.manual_seed(3)
    reference = vgg16_bn(weights=None)
    state = {}
    for key, tensor in reference.state_dict().items():
        if key.startswith("features.") and tensor.is_floating_point():
            # Random values tell a copied tensor from our own initialisation (BN starts at 0/1 in both).
            state[key] = torch.randn_like(tensor).abs() + 0.1
        elif key.startswith("features.") or key.startswith("classifier.6."):
            state[key] = tensor.clone()
    return state


@pytest.mark.slow
def test_imagenet_features_copied_gray(imagenet_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "vgg16_bn.pth"
    torch.save(imagenet_state, path)
    gray = build_vgg16(hidden=16)
    head_before = {key: value.clone() for key, value in gray.classifier.state_dict().items()}
    copied = load_imagenet_features(gray, path)
    own = gray.state_dict()
    assert copied == VGG16_BN_FEATURE_TENSORS
    torch.testing.assert_close(own["features.0.weight"], imagenet_state["features.0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(own["features.41.running_var"], imagenet_state["features.41.running_var"])
    for key, value in gray.classifier.state_dict().items():
        assert torch.equal(value, head_before[key]), key


@pytest.mark.slow
def test_imagenet_features_copied_rgb(imagenet_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "vgg16_bn.safetensors"
    save_file({key: value for key, value in imagenet_state.items() if key.startswith("features.")}, str(path))
    rgb = build_vgg16(in_channels=3, hidden=16)
    copied = load_imagenet_features(rgb, path)
    own = rgb.state_dict()
    assert copied == VGG16_BN_FEATURE_TENSORS
    for key, value in imagenet_state.items():
        if key.startswith("features."):
            assert torch.equal(own[key], value), key


def test_imagenet_file_without_features(tmp_path: Path) -> None:
    path = tmp_path / "head_only.pth"
    torch.save({"state_dict": {"classifier.6.weight": torch.zeros(1000, 4096)}}, path)
    with pytest.raises(ValueError, match="no 'features.\\*' tensors"):
        load_imagenet_features(build_vgg16(hidden=16), path)


def test_imagenet_wrong_shape_named(tmp_path: Path) -> None:
    path = tmp_path / "vgg11.pth"
    torch.save({"features.3.weight": torch.zeros(128, 64, 3, 3)}, path)
    with pytest.raises(ValueError, match=r"features.3.weight has shape \(128, 64, 3, 3\), expected \(64, 64, 3, 3\)"):
        load_imagenet_features(build_vgg16(hidden=16), path)


def test_imagenet_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ImageNet weights not found"):
        load_imagenet_features(build_vgg16(hidden=16), tmp_path / "absent.pth")
