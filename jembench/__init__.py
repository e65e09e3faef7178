"""jembench: evaluation and benchmarking of energy-based hybrid classifiers (JEM, JEM++ and family).

``jembench.load(path)`` reads a checkpoint as a :class:`HybridModel`; ``jembench.wrap(module, ...)`` turns any
classifier into one. Every registered evaluator (``clf``, ``calib``, ``ood``, ``robust``, ``gen``, ``density``; see
``jembench.evaluators.registry``) is a function here mirroring the CLI command of the same name, as are
``run_all`` and ``report``; they return result objects that serialise to the JSON the CLI writes.
"""

from importlib import import_module
from importlib.util import find_spec
from typing import Any

from .errors import JembenchError
from .version import __version__

# Python API name -> module that defines it (imported on first use, so `import jembench` and `jembench --help`
# import no torch); the evaluators' functions come from the registry
_LAZY = {
    "compose": "jembench.models.compose",
    **dict.fromkeys(("HybridModel", "ModelInfo", "inspect_checkpoint", "load", "save_native", "wrap"),
                    "jembench.models"),
    "get_dataset": "jembench.data",
    "ForwardCache": "jembench.forward",
    "train": "jembench.training",
    "run_all": "jembench.evaluators.run_all",
    "report": "jembench.evaluators.report",
    "load_results": "jembench.reporting.tidy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name.startswith("_") or find_spec(f"{__name__}.{name}") is not None:  # a submodule: let the import system
        raise AttributeError(f"module 'jembench' has no attribute {name!r}")
    from .evaluators.registry import REGISTRY

    if name in REGISTRY:  # the API function an evaluator's module defines under the evaluator's name
        return getattr(import_module(REGISTRY[name].run.__module__), name)
    raise AttributeError(f"module 'jembench' has no attribute {name!r}")


def __dir__() -> list[str]:
    from .evaluators.registry import REGISTRY

    return sorted({*globals(), *_LAZY, *REGISTRY})


__all__ = ["JembenchError", "__version__", *_LAZY]
