"""Dataset-specific feature extractors for IS / FID / KID / precision-recall, registered with torch-fidelity.

Inception features are meaningless for 8x8 grayscale digits (and unavailable offline). For such data the
metrics use a *reference classifier* trained by jembench on the dataset (``jembench train --px-weight 0``):
its penultimate layer (the WRN trunk's pooled features) feeds FID / KID / precision-recall, its logits
feed the Inception Score (torch-fidelity applies the softmax), exactly as Inception's pool3 / logits do.

Each extractor is a :class:`torch_fidelity.FeatureExtractorBase` registered under its own name with
``torch_fidelity.register_feature_extractor``, so ``torch_fidelity.calculate_metrics(feature_extractor=name)``
computes the same numbers jembench reports. Inputs follow torch-fidelity's convention: uint8 ``[B, C, H, W]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from .errors import JembenchError

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
# dataset -> (extractor name, file in checkpoints/): the reference classifiers bundled with jembench
BUNDLED = {"digits": ("digits-wrn", "digits-reference-classifier.pt")}
FEATURES = ("penultimate", "logits")


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """A jembench WRN classifier as a torch-fidelity extractor: ``penultimate`` (FID/KID/PRC), ``logits`` (IS).

    The checkpoint is the subclass's ``checkpoint`` (see :func:`register_classifier`) unless torch-fidelity
    passes ``feature_extractor_weights_path``.
    """

    checkpoint: Optional[str] = None

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: Optional[str] = None,
                 **kwargs):
        super().__init__(name, features_list)
        from .models import load
        from .models.wrn import JEMNet

        path = feature_extractor_weights_path or self.checkpoint
        vassert(path is not None, f"feature extractor {name!r} has no checkpoint")
        self.model = load(path)
        if not isinstance(self.model.net, JEMNet):
            raise JembenchError(f"feature extractor {path}: not a WRN classifier (need its penultimate layer)")
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "penultimate"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError("jembench classifier extractors are not compiled")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        net = self.model.net
        z = net.f(self.model.to_model_space(x.to(torch.float32) / 255.0))
        out = {"penultimate": z, "logits": net.class_output(z)}
        return tuple(out[name] for name in self.features_list)


def register_classifier(name: str, checkpoint: str | Path) -> str:
    """Register the classifier file ``checkpoint`` with torch-fidelity as extractor ``name`` (idempotent)."""
    checkpoint = str(Path(checkpoint).resolve())
    cls = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if cls is not None:
        if getattr(cls, "checkpoint", None) != checkpoint:
            raise JembenchError(f"feature extractor name {name!r} is already taken by another file; "
                                f"rename {checkpoint}")
        return name
    cls = type(f"Extractor_{name}", (ClassifierFeatureExtractor,), {"checkpoint": checkpoint})
    register_feature_extractor(name, cls)
    return name


def bundled(dataset: str) -> Optional[tuple[str, Path]]:
    """``(name, path)`` of the reference classifier bundled for ``dataset``, registered; None if there is none."""
    if dataset not in BUNDLED:
        return None
    name, file = BUNDLED[dataset]
    path = CHECKPOINTS_DIR / file
    if not path.exists():
        raise JembenchError(f"the bundled feature extractor {path} is missing (a partial install?); reinstall jembench "
                            "or pass --feature-extractor inception / PATH")
    register_classifier(name, path)
    return name, path
