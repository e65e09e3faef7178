"""Datasets: a registry of named sets, generic npz / folder sources and synthetic OOD sets."""

from .adapt import adapt_to
from .imageset import ImageSet
from .ood_sets import load_ood_set
from .registry import REGISTRY, DatasetSpec, data_root, get_dataset, get_spec, known_names, register
from .synthetic import SYNTHETIC_NAMES, make_synthetic

__all__ = ["DatasetSpec", "ImageSet", "REGISTRY", "SYNTHETIC_NAMES", "adapt_to", "data_root", "get_dataset", "get_spec",
           "known_names", "load_ood_set", "make_synthetic", "register"]
