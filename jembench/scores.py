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
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from .data.imageset import ImageSet
from .errors import JembenchError
from .forward import ForwardPass, noisy_batches
from .models.hybrid import HybridModel

LOGIT_SCORES = ("logp", "msp", "maxlogit", "energy-T")
GRADIENT_SCORES = ("gradnorm",)
SCORES = LOGIT_SCORES + GRADIENT_SCORES
CONVENTION = ("higher = more in-distribution; logp = log p~(x) (HybridModel.log_px), msp = max softmax, "
              "maxlogit = max logit, energy-T = T*logsumexp(logits/T), gradnorm = -||d log p~(x)/dx||_2 "
              "(x in model space)")


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
    if not temperature > 0:
        raise JembenchError(f"--temperature must be > 0, got {temperature}")
    return temperature * torch.logsumexp(logits / temperature, dim=-1)


def logit_scores(fp: ForwardPass, names: Sequence[str], temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """The logit-based scores among ``names`` from one forward pass (no model call)."""
    logits = fp.logits.float()
    make = {"logp": lambda: fp.log_px.float(),
            "msp": lambda: logits.softmax(-1).amax(-1),
            "maxlogit": lambda: logits.amax(-1),
            "energy-T": lambda: energy_score(logits, temperature)}
    return {n: make[n]() for n in names if n in make}


def input_grad_norm(model: HybridModel, x: torch.Tensor) -> torch.Tensor:
    """||d log p~(x_i) / dx_i||_2 for each sample of the batch ``x`` (model space), one backward pass.

    Exact per sample when the model treats samples independently (eval mode: BN uses running stats).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model.log_px(x).sum(), x)
    return grad.flatten(1).norm(dim=1)


def gradnorm_scores(model: HybridModel, imageset: ImageSet, *, sigma: float = 0.0, seed: int = 0,
                    batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """``gradnorm`` = -||d log p~(x)/dx||_2 for every image, with the test noise of the forward cache.

    The noise of sample i is :func:`jembench.forward.test_noise` (same sigma and seed as the forward pass), so
    logit and gradient scores see the same noisy inputs, whatever the batch size. The model runs in eval mode, as in
    the forward cache (train-mode batch norm would mix samples); its flags and BN statistics are restored after.
    Returns float32 ``[N]`` on CPU.
    """
    out = [-input_grad_norm(model, x).float().cpu()
           for _, x in noisy_batches(model, imageset, batch_size, sigma, seed, "gradnorm", progress)]
    return torch.cat(out) if out else torch.zeros(0)
