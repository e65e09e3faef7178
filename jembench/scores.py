"""OOD scores of a hybrid model. Convention: HIGHER = MORE IN-DISTRIBUTION, for every score.

- ``logp``: log p~(x) = logsumexp_y f(x)[y] (CCF models) or the energy head (``F`` models): HybridModel.log_px.
  JEM's ``px`` score (Grathwohl et al. 2020, Table 2).
- ``msp``: max_y softmax(f(x))[y], JEM's ``py`` (Hendrycks & Gimpel 2017).
- ``maxlogit``: max_y f(x)[y] (Hendrycks et al. 2022).
- ``energy-T``: T * logsumexp(f(x) / T) = -E_T(x), the free-energy score of Liu et al. 2020 at temperature T
  (equals ``logp`` of a CCF model at T = 1).
- ``gradnorm``: -||d log p~(x) / dx||_2 per sample, JEM's ``pxgrad`` "approximate mass"; x in model space
  (the model's own input, e.g. [-1, 1] for JEM), the norm over all C*H*W input values.

The first four read the logits of one forward pass (:class:`jembench.forward.ForwardPass`); ``gradnorm`` needs an
input-gradient pass, batched: in eval mode samples do not interact, so the gradient of
``sum_i log p~(x_i)`` with respect to the batch holds every per-sample gradient.

Every score is registered once in :data:`SCORES` with what it needs: ``logits`` (read from the shared forward pass,
no model call of its own) or ``gradient`` / ``pass`` (its own pass over the images, given the model and set).
Adding a score is one decorated function here; the OOD evaluator, its options and the report follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from .errors import JembenchError

if TYPE_CHECKING:  # torch is imported when a score is computed: the registry's names (--score) stay light
    import torch

    from .data.imageset import ImageSet
    from .forward import ForwardPass
    from .models.hybrid import HybridModel

NEEDS = ("logits", "gradient", "pass")


@dataclass(frozen=True)
class Score:
    """An OOD score: ``compute(fp, temperature)`` for ``needs="logits"``; ``compute(model, imageset, sigma=,
    seed=, batch_size=, progress=)`` for scores that make their own pass (``gradient``, ``pass``)."""

    name: str
    needs: str
    compute: Callable[..., torch.Tensor]
    doc: str


SCORES: dict[str, Score] = {}  # name -> Score, in registration order (the order of rows and columns)


def score(name: str, needs: str = "logits") -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register the decorated function as the OOD score ``name``; its docstring's first line is the short
    definition recorded in the protocol."""
    if needs not in NEEDS:
        raise ValueError(f"a score needs one of {NEEDS}, not {needs!r}")

    def register(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        SCORES[name] = Score(name, needs, fn, (fn.__doc__ or name).strip().splitlines()[0])
        return fn
    return register


def parse_scores(names: Optional[Iterable[str]]) -> list[str]:
    """Score names (comma lists allowed) -> checked, ordered, de-duplicated list; None or empty -> all."""
    wanted = [t.strip() for n in (names or ()) for t in str(n).split(",") if t.strip()]
    if not wanted:
        return list(SCORES)
    unknown = [n for n in wanted if n not in SCORES]
    if unknown:
        raise JembenchError(f"unknown OOD score {unknown[0]!r}; choose from {', '.join(SCORES)} (comma list allowed)")
    return [s for s in SCORES if s in wanted]


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T * logsumexp(logits / T): the negative free energy at temperature T (Liu et al. 2020)."""
    import torch

    if not temperature > 0:
        raise JembenchError(f"--temperature must be > 0, got {temperature}")
    return temperature * torch.logsumexp(logits / temperature, dim=-1)


@score("logp")
def _logp(fp: ForwardPass, temperature: float) -> torch.Tensor:
    """log p~(x) (HybridModel.log_px)"""
    return fp.log_px.float()


@score("msp")
def _msp(fp: ForwardPass, temperature: float) -> torch.Tensor:
    """max softmax"""
    return fp.logits.float().softmax(-1).amax(-1)


@score("maxlogit")
def _maxlogit(fp: ForwardPass, temperature: float) -> torch.Tensor:
    """max logit"""
    return fp.logits.float().amax(-1)


@score("energy-T")
def _energy(fp: ForwardPass, temperature: float) -> torch.Tensor:
    """T*logsumexp(logits/T)"""
    return energy_score(fp.logits.float(), temperature)


def logit_scores(fp: ForwardPass, names: Sequence[str], temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """The logit-based scores among ``names`` from one forward pass (no model call)."""
    return {n: SCORES[n].compute(fp, temperature) for n in names if n in SCORES and SCORES[n].needs == "logits"}


def input_grad_norm(model: HybridModel, x: torch.Tensor) -> torch.Tensor:
    """||d log p~(x_i) / dx_i||_2 for each sample of the batch ``x`` (model space), one backward pass.

    Exact per sample when the model treats samples independently (eval mode: BN uses running stats).
    """
    import torch

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model.log_px(x).sum(), x)
    return grad.flatten(1).norm(dim=1)


@score("gradnorm", needs="gradient")
def gradnorm_scores(model: HybridModel, imageset: ImageSet, *, sigma: float = 0.0, seed: int = 0,
                    batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """-||d log p~(x)/dx||_2

    JEM's approximate mass, from batched input gradients.
    The noise of sample i is :func:`jembench.forward.test_noise` (same sigma and seed as the forward pass), so
    logit and gradient scores see the same noisy inputs, whatever the batch size. The model runs in eval mode, as in
    the forward cache (train-mode batch norm would mix samples); its flags and BN statistics are restored after.
    Returns float32 ``[N]`` on CPU.
    """
    import torch

    from .forward import noisy_batches

    out = [-input_grad_norm(model, x).float().cpu()
           for _, x in noisy_batches(model, imageset, batch_size, sigma, seed, "gradnorm", progress)]
    return torch.cat(out) if out else torch.zeros(0)


CONVENTION = ("higher = more in-distribution; " + ", ".join(f"{s.name} = {s.doc}" for s in SCORES.values())
              + " (x in model space)")  # recorded in every OOD protocol
