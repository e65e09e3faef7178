"""Adversarial attacks in pixel space: a wrapper that hides the model's input range (and optionally
defends it with JEM-K SGLD purification), and the torchattacks attacks run on it, explicitly seeded."""

from typing import Any

from .registry import ATTACKS, NORMS, build_attack, check_attack, default_step_size, run_attack
from .wrapper import PassCounter, PixelClassifier, PurifyConfig


def __getattr__(name: str) -> Any:  # KeyedPGD imports torchattacks: only when asked for
    if name == "KeyedPGD":
        from .pgd import KeyedPGD

        return KeyedPGD
    raise AttributeError(f"module 'jembench.attacks' has no attribute {name!r}")


__all__ = ["ATTACKS", "KeyedPGD", "NORMS", "PassCounter", "PixelClassifier", "PurifyConfig", "build_attack",
           "check_attack", "default_step_size", "run_attack"]
