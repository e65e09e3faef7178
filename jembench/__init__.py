"""jembench: evaluation and benchmarking of energy-based hybrid classifiers (JEM, JEM++ and family).

``jembench.load(path)`` reads a checkpoint as a :class:`HybridModel`; ``jembench.wrap(module, ...)`` turns any
classifier into one. The evaluators (``clf``, ``calib``, ``ood``, ``robust``, ``gen``, ``run_all``) mirror the CLI
commands of the same names and return result objects that serialise to the JSON the CLI writes.
"""

from importlib import import_module
from typing import Any

from .version import __version__  # noqa: E402

from .errors import JembenchError  # noqa: E402
from .models import HybridModel, ModelInfo, inspect_checkpoint, load, save_native, wrap  # noqa: E402

# Python API name -> module that defines it (imported on first use, so `import jembench` stays light)
_LAZY = {
    "get_dataset": "jembench.data",
    "ForwardCache": "jembench.forward",
    "train": "jembench.training",
    "clf": "jembench.evaluators.clf",
    "calib": "jembench.evaluators.calib",
    "ood": "jembench.evaluators.ood",
    "robust": "jembench.evaluators.robust",
    "gen": "jembench.evaluators.gen",
    "run_all": "jembench.evaluators.run_all",
    "report": "jembench.evaluators.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jembench' has no attribute {name!r}")


__all__ = ["HybridModel", "JembenchError", "ModelInfo", "__version__", "inspect_checkpoint", "load", "save_native",
           "wrap", *_LAZY]
