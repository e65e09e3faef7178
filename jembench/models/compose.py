"""Products of experts (Hinton 2002): p~(x, y) = prod_i p~_i(x, y)^(w_i), i.e. E(x, y) = sum_i w_i E_i(x, y).

The product is a CCF :class:`HybridModel` whose logits are the weighted sum of the experts' joint log-densities
log p~_i(x, y) (for CCF experts these are their logits, so the logits add); p(y|x), log p~(x) = logsumexp_y,
sampling and every evaluator follow from them. Experts must read the same inputs: input shape, input
normalisation (the model space) and class count agree, or it fails with one line.

Checkpoint spec (every command): ``poe:A.pt,B.pt`` (weights 1) or ``poe:A.pt@1,B.pt@0.5``; Python:
``jembench.compose([m1, m2], weights=[1, 0.5])``. The experts, their files' sha256 and weights are recorded
in ``ModelInfo.experts`` (the checkpoint block of results.json).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import CheckpointError
from .hybrid import HybridModel, ModelInfo

PREFIX = "poe:"
AGREE = ("in_channels", "image_size", "mean", "std", "n_classes")  # what every expert must share


class ProductOfExperts(nn.Module):
    """``x -> sum_i w_i log p~_i(x, y)`` for every class y (``[B, C]``). The weights are a buffer, so they are part
    of the state dict and of every content hash of the model (the forward cache keys on it)."""

    def __init__(self, experts: Sequence[HybridModel], weights: Sequence[float]):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.register_buffer("weights", torch.tensor([float(w) for w in weights], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for w, m in zip(self.weights, self.experts):  # a 0-d float64 weight times float32 keeps float32
            logits, log_px = m.logits_and_log_px(x)
            joint = logits if m.info.head == "ccf" else log_px[:, None] + logits.log_softmax(-1)
            total = w * joint if total is None else total + w * joint
        return total


def compose(models: Sequence[HybridModel | str], weights: Optional[Sequence[float]] = None, *,
            name: Optional[str] = None, **load_kw: Any) -> HybridModel:
    """The product of ``models`` (HybridModels or checkpoint paths, loaded with ``load_kw``) with ``weights``
    (default: all 1) as one :class:`HybridModel` (see the module docstring)."""
    from .checkpoints import load

    if not models:
        raise CheckpointError("compose: give at least one expert")
    weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models):
        raise CheckpointError(f"compose: {len(models)} experts but {len(weights)} weights; give one weight each")
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if bad:
        raise CheckpointError(f"compose: weights must be finite and > 0, got {bad[0]:g}")
    experts = [m if isinstance(m, HybridModel) else load(m, **load_kw) for m in models]
    _check_agree(experts)
    first = experts[0].info
    dev = experts[0].device
    experts = [m.to(dev) for m in experts]
    parts = [{"name": m.info.name, "path": m.info.path, "sha256": m.info.sha256, "family": m.info.family,
              "head": m.info.head, "weight": w} for m, w in zip(experts, weights)]
    label = name or "poe(" + ",".join(f"{p['name']}@{p['weight']:g}" for p in parts) + ")"
    common = lambda key: (getattr(first, key) if all(getattr(m.info, key) == getattr(first, key)  # noqa: E731
                                                     for m in experts) else None)
    info = ModelInfo(family="poe", source_format="poe", architecture="ProductOfExperts", n_classes=first.n_classes,
                     in_channels=first.in_channels, image_size=tuple(first.image_size), mean=tuple(first.mean),
                     std=tuple(first.std), norm=common("norm"), head="ccf", dataset=first.dataset,
                     train_sigma=common("train_sigma"), name=label, experts=parts,
                     sha256=_combined_hash(experts, weights),
                     notes=[f"product of {len(experts)} experts: E(x, y) = sum_i w_i E_i(x, y)"])
    if common("dataset") is None:
        info.notes.append(f"experts trained on different datasets; evaluated on {first.dataset!r} by default")
    return HybridModel(ProductOfExperts(experts, weights), info).to(dev).eval()


def _check_agree(experts: Sequence[HybridModel]) -> None:
    first = experts[0].info
    for m in experts[1:]:
        for key in AGREE:
            a, b = (tuple(v) if isinstance(v, (list, tuple)) else v
                    for v in (getattr(first, key), getattr(m.info, key)))
            if a != b:
                raise CheckpointError(f"poe: experts disagree on {key.replace('_', ' ')}: {first.name!r} has {a}, "
                                      f"{m.info.name!r} has {b}; a product needs experts with the same inputs and "
                                      "classes")


def _combined_hash(experts: Sequence[HybridModel], weights: Sequence[float]) -> Optional[str]:
    """sha256 over the experts' file hashes and weights (None when an expert has no file hash)."""
    if any(m.info.sha256 is None for m in experts):
        return None
    blob = ";".join(f"{m.info.sha256}@{w!r}" for m, w in zip(experts, weights))
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_spec(spec: str) -> tuple[list[str], list[float]]:
    """``"poe:A.pt@1,B.pt@0.5"`` -> ``(["A.pt", "B.pt"], [1.0, 0.5])``; a missing ``@w`` is weight 1."""
    paths, weights = [], []
    for item in spec[len(PREFIX):].split(","):
        item = item.strip()
        if not item:
            continue
        path, sep, w = item.rpartition("@")
        if not sep:
            path, w = item, "1"
        try:
            weights.append(float(w))
        except ValueError:
            raise CheckpointError(f"{spec}: weight {w!r} of {path!r} is not a number (write poe:A.pt@1,B.pt@0.5)") \
                from None
        paths.append(path)
    if not paths:
        raise CheckpointError(f"{spec!r} names no expert: write poe:A.pt,B.pt (weights with @: poe:A.pt@1,B.pt@0.5)")
    return paths, weights


def load_spec(spec: str, device: Any = None, **load_kw: Any) -> HybridModel:
    """The product named by a ``poe:`` spec; ``load_kw`` (overrides, default dataset) apply to every expert."""
    paths, weights = parse_spec(spec)
    name = load_kw.pop("name", None)  # names the product, not each expert
    model = compose(paths, weights, name=name, **load_kw)
    model.info.path = spec
    if device is not None:
        from ..runtime import resolve_device

        model.to(resolve_device(device))
    return model
