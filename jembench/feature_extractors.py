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

import os
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from . import bundled as shipped
from . import defaults
from .errors import JembenchError
from .settings import hint



class Bundled(NamedTuple):
    """A reference classifier shipped with the package (``bundled:``): its extractor name, file and sha256 (the
    name stands for exactly this file: another file never reports under it)."""

    name: str
    file: str
    sha256: str


# dataset -> the reference classifier bundled for it
BUNDLED = {"digits": Bundled("digits-wrn", "digits-reference-classifier.pt",
                             "232e7c0172ff696e0cb4682fdd0b9cf7998e7d6445548cac7ff9373afff0423e")}
EXTRACTORS_ENV = defaults.GEN_EXTRACTORS_ENV
PACKAGE_DIR = shipped.DIRECTORY  # package data: there after `pip install .`, a wheel or an editable install
FEATURES = ("penultimate", "logits")


def choose_hint(value: str) -> str:
    """How to choose the extractor ``value``, on each command that takes one (gen and run-all spell it apart)."""
    return hint("gen", "feature_extractor", value)


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """A jembench WRN classifier as a torch-fidelity extractor: ``penultimate`` (FID/KID/PRC), ``logits`` (IS).

    The checkpoint is the subclass's ``checkpoint`` (see :func:`register_classifier`) unless torch-fidelity
    passes ``feature_extractor_weights_path``.
    """

    checkpoint: Optional[str] = None
    sha256: Optional[str] = None

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


def register_classifier(name: str, checkpoint: str | Path, sha256: Optional[str] = None) -> str:
    """Register the classifier file ``checkpoint`` with torch-fidelity as extractor ``name`` (idempotent: a name
    stays bound to the file content it was first registered with; the same content may move)."""
    from .models.checkpoints import file_sha256

    checkpoint = str(Path(checkpoint).resolve())
    sha256 = sha256 or file_sha256(checkpoint)
    cls = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if cls is not None:
        if getattr(cls, "sha256", None) != sha256:
            raise JembenchError(f"feature extractor name {name!r} is already taken by another file; "
                                f"rename {checkpoint}")
        cls.checkpoint = checkpoint
        return name
    cls = type(f"Extractor_{name}", (ClassifierFeatureExtractor,), {"checkpoint": checkpoint, "sha256": sha256})
    register_feature_extractor(name, cls)
    return name


def search_dirs() -> list[Path]:
    """Where bundled extractor files are looked for, in order: ``$JEMBENCH_EXTRACTORS`` (a folder you choose),
    then the package's own ``bundled/`` folder."""
    env = os.environ.get(EXTRACTORS_ENV)
    dirs = [Path(env).expanduser()] if env else []
    return dirs + [PACKAGE_DIR]


def bundled_path(dataset: str) -> Optional[Path]:
    """The file of the reference classifier bundled for ``dataset`` (first hit of :func:`search_dirs`, checked
    against its recorded sha256); None if none is bundled for ``dataset``. Raises, naming where to put it."""
    if dataset not in BUNDLED:
        return None
    from .models.checkpoints import file_sha256

    spec = BUNDLED[dataset]
    dirs = search_dirs()
    for d in dirs:
        path = d / spec.file
        if path.is_file():
            sha = file_sha256(path)
            if sha != spec.sha256:
                raise JembenchError(f"{path} is not the bundled {spec.name} extractor (sha256 {sha[:12]}..., expected "
                                    f"{spec.sha256[:12]}...): restore it, or pass it as "
                                    f"{choose_hint('PATH')} to report under its own name")
            return path
    where = ", ".join(str(d) for d in dict.fromkeys(dirs))
    raise JembenchError(f"the {spec.name} feature extractor ({spec.file}, shipped with jembench) is not in {where}: "
                        f"reinstall jembench, set ${EXTRACTORS_ENV}=DIR holding it, or pass "
                        f"{choose_hint('PATH/' + spec.file)}, or the same with inception")


def bundled(dataset: str) -> Optional[tuple[str, Path]]:
    """``(name, path)`` of the reference classifier bundled for ``dataset``, registered; None if there is none."""
    path = bundled_path(dataset)
    if path is None:
        return None
    spec = BUNDLED[dataset]
    register_classifier(spec.name, path, spec.sha256)
    return spec.name, path


def bundled_name(sha256: str) -> Optional[tuple[str, str]]:
    """``(dataset, name)`` of the bundled extractor whose file has this sha256, else None."""
    return next(((ds, b.name) for ds, b in BUNDLED.items() if b.sha256 == sha256), None)
