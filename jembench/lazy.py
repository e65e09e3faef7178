"""Names a package exports from submodules that import torch, loaded on first use (PEP 562).

A package whose ``__init__`` imported every submodule would import torch for anyone reading one light name from
it (``jembench.models.norms.NORMS`` for ``--norm``'s choices), and ``jembench --help`` would take seconds.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``where[name]`` is the submodule (relative, ``".hybrid"``) that
    defines ``name``; it is imported when ``name`` is first read."""
    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name], package), name)
    return __getattr__
