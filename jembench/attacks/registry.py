"""The attacks jembench runs, built from torchattacks, and their explicit seeding.

``pgd``: :class:`~jembench.attacks.pgd.KeyedPGD`, L-inf and L2, EOT samples batched, random start keyed by
sample index (equal to torchattacks' PGD / PGDL2 / EOTPGD without the random start). ``apgd-ce`` / ``apgd-dlr``:
``torchattacks.APGD`` (Croce & Hein 2020) with its ``eot_iter``. Every attack runs with a fixed random start
uniform in the eps-ball.

Seeding: a keyed attack (``attack.keyed``, :class:`KeyedPGD`) gets ``key(seed, start)``: its draws depend on the
seed and the dataset index of each image only. torchattacks' own attacks (APGD) draw random starts from torch's
*global* RNG and APGD reseeds it from its own ``seed``: :func:`run_attack` seeds both with the given seed right
before the call, inside ``torch.random.fork_rng`` so the caller's RNG state is left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import JembenchError

if TYPE_CHECKING:  # torch and torchattacks are imported when an attack runs: the registry's names stay light
    import torch
    import torch.nn as nn
    import torchattacks

NORMS = ("linf", "l2")
LINF_STEP = 2 / 255  # the L-inf step, widened to L2_REL_STEP * eps / steps when that is larger (Madry et al. 2018)
REL_STEP = 2.5  # step = 2.5 * eps / steps


def default_step_size(norm: str, eps: float, steps: int) -> float:
    """L-inf: 2/255, widened to 2.5 eps / steps so the ball can be crossed; L2: 2.5 eps / steps (Madry et al.)."""
    if norm == "linf":
        return max(LINF_STEP, REL_STEP * eps / steps)
    return REL_STEP * eps / steps


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: ``build(model, norm, eps, steps, alpha, eot)`` returns a torchattacks attack."""

    name: str
    build: Callable[..., "torchattacks.attack.Attack"]
    min_classes: int = 2
    doc: str = ""


def _pgd(model: nn.Module, norm: str, eps: float, steps: int, alpha: float, eot: int) -> torchattacks.attack.Attack:
    from .pgd import KeyedPGD  # imports torchattacks: when an attack is built, not when the registry is read

    return KeyedPGD(model, norm, eps=eps, alpha=alpha, steps=steps, eot_iter=eot, random_start=True)


def _apgd(loss: str) -> Callable[..., torchattacks.attack.Attack]:
    def build(model: nn.Module, norm: str, eps: float, steps: int, alpha: float, eot: int):
        import torchattacks

        return torchattacks.APGD(model, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=steps, n_restarts=1,
                                 seed=0, loss=loss, eot_iter=eot)
    return build


# name -> AttackSpec: adding a torchattacks attack is one entry here
ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in (
    AttackSpec("pgd", _pgd, doc="PGD (KeyedPGD: batched EOT, random start keyed by sample)"),
    AttackSpec("apgd-ce", _apgd("ce"), doc="APGD with cross-entropy (Croce & Hein 2020)"),
    AttackSpec("apgd-dlr", _apgd("dlr"), min_classes=3, doc="APGD with the DLR loss (Croce & Hein 2020)"),
)}


def check_attack(name: str, norm: str, n_classes: int) -> None:
    """One-line errors for unknown attacks or norms, and attacks that need more classes than the model has."""
    if norm not in NORMS:
        raise JembenchError(f"unknown norm {norm!r}: use one of {', '.join(NORMS)}")
    if name not in ATTACKS:
        raise JembenchError(f"unknown attack {name!r}: use one of {', '.join(ATTACKS)}")
    if n_classes < ATTACKS[name].min_classes:
        raise JembenchError(f"{name} needs at least {ATTACKS[name].min_classes} classes (the model has {n_classes}):"
                            " use pgd or apgd-ce")


def build_attack(name: str, model: nn.Module, *, norm: str, eps: float, steps: int,
                 step_size: Optional[float] = None, eot: int = 1) -> torchattacks.attack.Attack:
    """A torchattacks attack on ``model`` (pixels in [0, 1] -> logits); ``step_size`` None: the default rule."""
    if name not in ATTACKS:
        raise JembenchError(f"unknown attack {name!r}: use one of {', '.join(ATTACKS)}")
    alpha = default_step_size(norm, eps, steps) if step_size is None else step_size
    return ATTACKS[name].build(model, norm, eps, steps, alpha, eot)


def run_attack(attack: torchattacks.attack.Attack, images: torch.Tensor, labels: torch.Tensor,
               seed: int, start: int = 0) -> torch.Tensor:
    """``attack(images, labels)``, images ``start, start + 1, ...`` of the evaluation set: a keyed attack gets
    ``key(seed, start)``; otherwise torch's global RNG (and APGD's own seed) is set to ``seed`` for the call only.
    Returns detached adversarial images."""
    import torch
    import torchattacks  # already imported by the attack's construction

    if getattr(attack, "keyed", False):
        attack.key(seed, start)
        return attack(images, labels).detach()
    device = images.device
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if isinstance(attack, torchattacks.APGD):
            attack.seed = seed
        return attack(images, labels).detach()
