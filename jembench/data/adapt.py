"""Explicit, recorded rules that bring an :class:`ImageSet` to a model's input shape (C, H, W).

Size: scale so the image covers the target (for a square target: shorter side to the target size), bilinear with
antialiasing (``torch.nn.functional.interpolate(antialias=True)``), round to uint8, then center crop.
Channels: RGB -> gray by ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (rounded); gray -> RGB by
replicating the one channel. Every rule applied is written into ``meta["preprocessing"]`` ("none" for identity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DatasetError
from .imageset import ImageSet

LUMA_601 = (0.299, 0.587, 0.114)
CHUNK = 1024  # images resized per interpolate call (bounds float memory)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 1, H, W] by ITU-R BT.601 luma, rounded."""
    w = torch.tensor(LUMA_601, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.to(torch.float32) * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 1, H, W] -> uint8 [N, 3, H, W] by replicating the channel."""
    return images.expand(-1, 3, -1, -1).contiguous()


def resize_center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, C, h, w] -> uint8 [N, C, H, W]: scale by ``max(H/h, W/w)`` (bilinear, antialias), center crop."""
    h, w = images.shape[-2:]
    H, W = size
    if (h, w) == (H, W):
        return images
    scale = max(H / h, W / w)
    rh, rw = max(H, round(h * scale)), max(W, round(w * scale))
    top, left = int(round((rh - H) / 2.0)), int(round((rw - W) / 2.0))  # torchvision center_crop's offsets
    out = torch.empty((images.shape[0], images.shape[1], H, W), dtype=torch.uint8)
    for s in range(0, images.shape[0], CHUNK):
        x = images[s:s + CHUNK].to(torch.float32)
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
        out[s:s + CHUNK] = x[..., top:top + H, left:left + W].round().clamp(0, 255).to(torch.uint8)
    return out


def resize_rule(src: tuple[int, int], dst: tuple[int, int]) -> str:
    """The human-readable rule :func:`resize_center_crop` applies (recorded in meta)."""
    (h, w), (H, W) = src, dst
    scale = max(H / h, W / w)
    rh, rw = max(H, round(h * scale)), max(W, round(w * scale))
    how = f"shorter side to {H}" if H == W else f"scale {scale:.4g} to cover {H}x{W}"
    return f"resize {h}x{w} -> {rh}x{rw} ({how}; bilinear, antialias, rounded) + center crop {H}x{W}"


def adapt_to(imageset: ImageSet, shape: tuple[int, int, int]) -> ImageSet:
    """``imageset`` brought to ``shape`` = (C, H, W) by the module's rules, recorded in ``meta["preprocessing"]``.
    The rules work image by image, so a lazy set (:class:`~jembench.data.lazyset.LazyImageSet`) stays lazy: they
    are applied to each range read."""
    from .lazyset import LazyImageSet

    C, H, W = (int(v) for v in shape)
    c, h, w = imageset.shape
    steps, convert = [], []
    if c != C:
        if (c, C) == (3, 1):
            convert.append(to_gray)
            steps.append("RGB -> gray by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, rounded)")
        elif (c, C) == (1, 3):
            convert.append(to_rgb)
            steps.append("gray -> RGB by replicating the channel")
        else:
            raise DatasetError(f"dataset {imageset.name!r} has {c} channels and the model takes {C}: no rule converts "
                               f"{c} to {C} channels (only RGB <-> gray); give images with {C} channels")
    if (h, w) != (H, W):
        if min(h, w, H, W) < 1:
            raise DatasetError(f"cannot resize dataset {imageset.name!r} from {h}x{w} to {H}x{W}")
        convert.append(lambda images: resize_center_crop(images, (H, W)))
        steps.append(resize_rule((h, w), (H, W)))
    meta = dict(imageset.meta)
    meta["preprocessing"] = "; ".join(steps) if steps else "none"

    def apply(images: torch.Tensor) -> torch.Tensor:
        for f in convert:
            images = f(images)
        return images

    if isinstance(imageset, LazyImageSet):
        return imageset.map(apply, (C, H, W), meta)
    return ImageSet(imageset.name, imageset.split, apply(imageset.images), imageset.labels, imageset.n_classes, meta)
