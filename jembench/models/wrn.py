"""Pre-activation Wide-ResNet trunk and the JEM heads, laid out so JEM state dicts load unchanged.

WRN-depth-k (Zagoruyko & Komodakis 2016) as used by JEM (Grathwohl et al. 2020) and JEM++ (Yang & Ji
2021): depth = 6n + 4, stage widths [16, 16k, 32k, 64k], LeakyReLU(0.2), biases on every conv. The final
pooling is adaptive (equal to JEM's ``avg_pool2d(out, 8)`` on 32x32 inputs, and defined for any size,
e.g. the 8x8 digits).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norms import NORMS

LEAK = 0.2


class ActNorm(nn.Module):
    """Per-channel affine ``scale * (x + loc)`` with data-dependent init on first use (Kingma & Dhariwal 2018)."""

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self._seen_initialized = False  # a host-side copy, so forward does not sync with the GPU every call
        self._register_load_state_dict_pre_hook(self._forget_initialized)

    def _forget_initialized(self, *args: object, **kwargs: object) -> None:
        self._seen_initialized = False

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        self.loc.copy_(-flat.mean(1).view(1, -1, 1, 1))
        self.scale.copy_(1.0 / (flat.std(1).view(1, -1, 1, 1) + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._seen_initialized:
            if self.initialized.item() == 0:
                self._initialize(x)
            self._seen_initialized = True
        return self.scale * (x + self.loc)


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layers JEM's ``get_norm`` offers, with the same parameter names."""
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels, momentum=0.9)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    if norm == "act":
        return ActNorm(channels)
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


class WideBlock(nn.Module):
    """``out = conv2(lrelu(bn2(dropout(conv1(lrelu(bn1(x))))))) + shortcut(x)``, stride on conv2."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.bn1 = make_norm(norm, in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, bias=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(F.leaky_relu(self.bn1(x), LEAK)))
        out = self.conv2(F.leaky_relu(self.bn2(out), LEAK))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """The trunk ``f``: image -> feature vector of size 64k."""

    def __init__(self, depth: int = 28, width: int = 10, norm: str = "none", in_channels: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=True)
        in_planes = widths[0]
        for stage, stride in zip((1, 2, 3), (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBlock(in_planes, widths[stage], stride if i == 0 else 1, norm, dropout))
                in_planes = widths[stage]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.bn1 = make_norm(norm, in_planes)
        self.feature_dim = in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.leaky_relu(self.bn1(out), LEAK)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class JEMNet(nn.Module):
    """Trunk ``f`` plus ``energy_output`` (1 unit) and ``class_output`` heads: JEM's F / CCF key layout."""

    def __init__(self, depth: int, width: int, norm: str, in_channels: int, n_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        self.f = WideResNet(depth, width, norm, in_channels, dropout)
        self.energy_output = nn.Linear(self.f.feature_dim, 1)
        self.class_output = nn.Linear(self.f.feature_dim, n_classes)
