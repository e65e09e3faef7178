"""Adversarial attacks in pixel space: a wrapper that hides the model's input range (and optionally
defends it with JEM-K SGLD purification), and the torchattacks attacks run on it, explicitly seeded.

The registry (names, threat models) needs no torch; the wrapper and the attacks are imported on first use."""

from ..lazy import lazy_exports
from .registry import ATTACKS, NORMS, build_attack, check_attack, default_step_size, run_attack

__getattr__ = lazy_exports(__name__, {"KeyedPGD": ".pgd", "PassCounter": ".wrapper", "PixelClassifier": ".wrapper",
                                      "PurifyConfig": ".wrapper"})

__all__ = ["ATTACKS", "KeyedPGD", "NORMS", "PassCounter", "PixelClassifier", "PurifyConfig", "build_attack",
           "check_attack", "default_step_size", "run_attack"]
