"""Adversarial attacks in pixel space: a wrapper that hides the model's input range (and optionally
defends it with JEM-K SGLD purification), and the torchattacks attacks run on it, explicitly seeded."""

from .registry import ATTACKS, NORMS, EOTPGDL2, build_attack, check_attack, default_step_size, run_attack
from .wrapper import PassCounter, PixelClassifier, PurifyConfig

__all__ = ["ATTACKS", "EOTPGDL2", "NORMS", "PassCounter", "PixelClassifier", "PurifyConfig", "build_attack",
           "check_attack", "default_step_size", "run_attack"]
