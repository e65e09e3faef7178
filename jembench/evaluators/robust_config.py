"""The configuration of one robustness threat model (:class:`RobustConfig`), the row and metric names, and the
passes each setting costs (:func:`setting_costs`, what ``--plan`` prints and every evaluation records)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from ..attacks import default_step_size
from ..cost import Cost

if TYPE_CHECKING:  # torch-backed: imported where used, so the robust evaluator's settings stay light
    from ..attacks import PurifyConfig

PROBE_N = 16  # images of the large-eps probe (accuracy must fall to about 0)
PROBE_EPS = {"linf": 0.5, "l2": 0.5}  # l2: times sqrt(C * H * W), i.e. the corner of the 0.5 L-inf ball


@dataclass(frozen=True)
class RobustConfig:
    """Everything that decides the numbers (besides model and data)."""

    norm: str
    eps: tuple[float, ...]
    purify_steps: tuple[int, ...]
    attacks: tuple[str, ...]
    steps: int
    step_size: Optional[float]
    restarts: int
    eot: int
    eval_purifications: int
    full_grad_max_k: int
    purify: PurifyConfig
    probe: bool
    seed: int
    batch_size: int
    batch_auto: bool = False  # batch_size is --batch-size auto's answer: rows of one forward + input-gradient pass

    def purify_config(self, k: int) -> PurifyConfig:
        return replace(self.purify, steps=k)

    def alpha(self, eps: float) -> float:
        return default_step_size(self.norm, eps, self.steps) if self.step_size is None else self.step_size

    def rows_per_image(self, k: int, gradient: Optional[str] = None) -> int:
        """Rows one image stacks in a pass of setting ``k`` beyond those ``batch_size`` already counts (EOT samples
        and evaluation purifications share the batch): its purification copies, and for gradients through the
        unrolled chain (``gradient="full"``) the 1 + 2K passes whose graphs are held together."""
        if not k:
            return 1
        return self.purify.copies * (1 + 2 * k if gradient == "full" else 1)

    def batch(self, k: int, gradient: Optional[str] = None) -> int:
        """The batch size of a pass of setting ``k``: ``batch_size`` as given, or under auto the probed rows
        divided by :meth:`rows_per_image` (so a pass stacks no more rows than the probe found to fit)."""
        return max(1, self.batch_size // self.rows_per_image(k, gradient)) if self.batch_auto else self.batch_size

    @classmethod
    def for_norm(cls, s: Any, norm: str, seed: int, batch_size: int, batch_auto: bool = False) -> "RobustConfig":
        """The configuration of one threat model from :class:`~jembench.evaluators.robust.RobustSettings`."""
        from ..attacks import PurifyConfig

        return cls(norm=norm, eps=tuple(sorted(set(s.eps_for(norm)))), purify_steps=tuple(sorted({0, *s.purify_steps})),
                   attacks=tuple(dict.fromkeys(s.attacks)), steps=s.steps, step_size=s.step_size,
                   restarts=s.restarts, eot=s.eot, eval_purifications=s.eval_purifications,
                   full_grad_max_k=s.full_grad_max_k,
                   purify=PurifyConfig(0, s.purify_step_size, s.purify_noise, s.purify_copies, s.purify_sigma),
                   probe=s.probe, seed=seed, batch_size=batch_size, batch_auto=batch_auto)

    def probe_eps(self, shape: tuple[int, ...]) -> float:
        base = PROBE_EPS[self.norm]
        return base if self.norm == "linf" else base * math.sqrt(math.prod(shape))


def attack_label(attack: str, k: int, gradient: str = "bpda") -> str:
    """Row label: the attack's name at K = 0; ``bpda-eot`` / ``full-grad`` (prefixed by non-PGD attacks) at K > 0."""
    if k == 0:
        return attack
    suffix = "bpda-eot" if gradient == "bpda" else "full-grad"
    return suffix if attack == "pgd" else f"{attack}-{suffix}"


def metric_name(norm: str, eps: float, k: int, label: str) -> str:
    """``robust_acc/linf/0.0314/K=10/bpda-eot`` (eps with 4 decimals, pixel units)."""
    return f"robust_acc/{norm}/{eps:.4f}/K={k}/{label}"


def _call_passes(cfg: RobustConfig, k: int, gradient: Optional[str]) -> tuple[int, int]:
    """(forward, backward) passes per image of one call of the classifier: K = 0 one pass; K > 0 each of the
    copies runs K SGLD steps (1 + 1 each) and a final forward; an attack gradient adds one backward per copy (BPDA)
    or 1 + 2K (through the unrolled chain), as :class:`~jembench.attacks.PassCounter` counts."""
    copies = cfg.purify.copies if k else 1
    fwd, bwd = copies * (k + 1), copies * k
    if gradient is not None:
        bwd += copies * (1 + 2 * k if gradient == "full" else 1)
    return fwd, bwd


def setting_costs(cfg: RobustConfig, k: int, n: int, clean_key: Optional[str] = None) -> list[Cost]:
    """Passes of one setting K on ``n`` images: its clean predictions, every attack row (restarts x steps x EOT
    gradient calls, then the evaluation: R purifications), transfer (each K = 0 source re-made: steps passes of the
    undefended model, then the evaluation), full gradients, the probe."""
    reps = cfg.eval_purifications if k else 1
    ef, eb = (reps * x for x in _call_passes(cfg, k, None))

    def attack(part: str, m: int, gradient: str) -> Cost:
        af, ab = _call_passes(cfg, k, gradient)
        calls = cfg.steps * (cfg.eot if k else 1)
        r = cfg.restarts
        return Cost(part, m, m * r * (calls * af + ef), m * r * (calls * ab + eb), attack_steps=m * r * cfg.steps,
                    sampler_steps=m * r * (calls + reps) * (cfg.purify.copies * k))

    out = [Cost(f"{cfg.norm} K={k} clean", n, n * ef, n * eb, sampler_steps=n * reps * cfg.purify.copies * k,
                shared=clean_key)]
    for eps in cfg.eps:
        out += [attack(f"{cfg.norm} K={k} eps={eps:.4g} {attack_label(a, k)}", n, "bpda") for a in cfg.attacks]
        if k:
            sources = len(cfg.attacks) * cfg.restarts
            out.append(Cost(f"{cfg.norm} K={k} eps={eps:.4g} transfer", n, n * sources * (cfg.steps + ef),
                            n * sources * (cfg.steps + eb), attack_steps=n * sources * cfg.steps,
                            sampler_steps=n * sources * reps * cfg.purify.copies * k))
        if 0 < k <= cfg.full_grad_max_k:
            out.append(attack(f"{cfg.norm} K={k} eps={eps:.4g} {attack_label(cfg.attacks[0], k, 'full')}", n, "full"))
    if cfg.probe:
        out.append(attack(f"{cfg.norm} K={k} probe", min(PROBE_N, n), "bpda"))
    return out
