"""VGG-16 expression classifier.

The convolutional part follows the VGG-16 configuration (13 convolutions in
five blocks, each block closed by a 2x2 max-pool), with batch norm after each
convolution. Module indices match torchvision's ``vgg16_bn`` so that ImageNet
weights load by name. A global average pool ends the features, so the same
network accepts 48x48 FER+ crops (a 1x1 map after five pools) and 224x224
images, and the three fully connected layers stay small enough for a weights
file far below 60 MB.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from fedcore.constants import CLASSES

logger = logging.getLogger(__name__)

# Output channels per convolution, "M" for a max-pool (the VGG paper's configuration D).
VGG16_LAYERS: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
)  # fmt: skip

ARCHITECTURE = "vgg16_bn"
DEFAULT_HIDDEN = 512
DEFAULT_DROPOUT = 0.5


class VGG16(nn.Module):
    """VGG-16-BN features, global average pool and a three-layer classifier head."""

    def __init__(
        self,
        *,
        num_classes: int = len(CLASSES),
        in_channels: int = 1,
        hidden: int = DEFAULT_HIDDEN,
        dropout: float = DEFAULT_DROPOUT,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.features = _make_features(in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(512, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return self.forward_head(self.forward_features(x))


def _make_features(in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG16_LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(item, int)
        layers += [
            nn.Conv2d(channels, item, kernel_size=3, padding=1),
            nn.BatchNorm2d(item),
            nn.ReLU(inplace=True),
        ]
        channels = item
    return nn.Sequential(*layers)


def build_vgg16(
    *,
    num_classes: int = len(CLASSES),
    in_channels: int = 1,
    hidden: int = DEFAULT_HIDDEN,
    dropout: float = DEFAULT_DROPOUT,
) -> VGG16:
    """Build an untrained VGG-16 expression classifier."""
    return VGG16(num_classes=num_classes, in_channels=in_channels, hidden=hidden, dropout=dropout)


def load_imagenet_features(model: VGG16, path: str | Path) -> int:
    """Copy the convolutional weights of a torchvision ``vgg16_bn`` state dict into ``model``.

    The classifier head is never copied because its shape differs. When the
    model takes grayscale input, the first convolution's RGB filters are summed
    over the colour axis, which gives the same response to a gray image.
    Returns the number of tensors copied.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]

    own = model.state_dict()
    copied = 0
    for key, tensor in state.items():
        if not key.startswith("features.") or key not in own:
            continue
        if key == "features.0.weight" and tensor.shape[1] == 3 and model.in_channels == 1:
            tensor = tensor.sum(dim=1, keepdim=True)
        if own[key].shape != tensor.shape:
            raise ValueError(
                f"{path}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(own[key].shape)}; is this a torchvision vgg16_bn state dict?"
            )
        own[key] = tensor
        copied += 1
    if copied == 0:
        raise ValueError(f"{path}: no 'features.*' tensors of a vgg16_bn state dict were found")
    model.load_state_dict(own)
    logger.info("Loaded %d ImageNet feature tensors from %s", copied, path)
    return copied
