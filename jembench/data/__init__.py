"""Datasets: a registry of named sets, generic npz / folder sources and synthetic OOD sets."""

from .imageset import ImageSet
from .registry import REGISTRY, DatasetSpec, data_root, get_dataset, get_spec, known_names, register

__all__ = ["DatasetSpec", "ImageSet", "REGISTRY", "data_root", "get_dataset", "get_spec", "known_names", "register"]
