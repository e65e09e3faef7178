"""PGD (Madry et al. 2018), L-inf and L2, with EOT samples batched along the batch dimension and a random start
keyed by sample index. In a module of its own so that torchattacks is imported only when an attack is built.

Per step: the gradient of ``sum_e CE(f(x_e), y)`` over ``eot`` replicas (Athalye et al. 2018; torchattacks'
``EOTPGD`` sums the replicas' gradients in a loop, this stacks them into one batch of ``eot * B`` rows, so the
purifier sees replica e as rows ``[e * B, (e + 1) * B)``); L-inf: ``x <- clip(x + alpha sign(g))`` to the eps-ball
and [0, 1]; L2: ``x <- x + alpha g / ||g||``, projected onto the L2 eps-ball and [0, 1] (safe at eps = 0).

Random start of sample i (``jembench.rng.keyed``, chunks of ``SAMPLE_CHUNK``): L-inf ``eps (2 u - 1)``, u ~ U[0, 1)
keyed ``(seed, "start")``; L2 ``eps r d / ||d||``, d ~ N(0, I) keyed ``(seed, "start")``, r ~ U[0, 1) keyed
``(seed, "start-radius")`` (torchattacks' PGDL2 start). So the adversarial example of a sample does not depend on
the batch it is in. ``key(seed, start)`` sets the seed and the index of the next call's first sample.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

from ..rng import SAMPLE_CHUNK, keyed


class KeyedPGD(torchattacks.attack.Attack):
    """PGD with batched EOT and a per-sample keyed random start (see the module docstring)."""

    keyed = True

    def __init__(self, model: nn.Module, norm: str = "linf", eps: float = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, eot_iter: int = 1, random_start: bool = True, eps_for_division: float = 1e-10):
        super().__init__("KeyedPGD", model)
        self.norm, self.eps, self.alpha, self.steps = norm, eps, alpha, steps
        self.eot_iter, self.random_start, self.eps_for_division = eot_iter, random_start, eps_for_division
        self.supported_mode = ["default"]
        self.key(0, 0)

    def key(self, seed: int, start: int) -> None:
        """The seed of the random starts and the dataset index of the next call's first image."""
        self.seed, self.start = int(seed), int(start)

    def _random_start(self, images: torch.Tensor) -> torch.Tensor:
        lo, hi, shape = self.start, self.start + len(images), tuple(images.shape[1:])
        if self.norm == "linf":
            u = keyed(lo, hi, shape, self.seed, "start", kind="rand", chunk=SAMPLE_CHUNK).to(images)
            return self.eps * (2 * u - 1)
        d = keyed(lo, hi, shape, self.seed, "start", chunk=SAMPLE_CHUNK).to(images)
        r = keyed(lo, hi, (1,) * len(shape), self.seed, "start-radius", kind="rand", chunk=SAMPLE_CHUNK).to(images)
        return d * (r * self.eps / d.flatten(1).norm(dim=1).view(-1, *(1,) * len(shape)))

    def _project(self, adv: torch.Tensor, images: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        b = len(images)
        if self.norm == "linf":
            delta = torch.clamp(adv + self.alpha * grad.sign() - images, -self.eps, self.eps)
        else:
            grad = grad / (grad.view(b, -1).norm(dim=1) + self.eps_for_division).view(b, 1, 1, 1)
            delta = adv + self.alpha * grad - images
            norms = delta.view(b, -1).norm(dim=1).clamp_min(1e-12)
            delta = delta * torch.clamp(self.eps / norms, max=1.0).view(b, 1, 1, 1)
        return torch.clamp(images + delta, 0, 1).detach()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        b = len(images)
        adv = images.clone()
        if self.random_start:
            adv = torch.clamp(adv + self._random_start(images), 0, 1).detach()
        stacked_labels = labels.repeat(self.eot_iter)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            logits = self.get_logits(adv.repeat(self.eot_iter, 1, 1, 1))  # replica e: rows [e * b, (e + 1) * b)
            cost = F.cross_entropy(logits, stacked_labels, reduction="sum") / b  # = sum_e mean CE of replica e
            (grad,) = torch.autograd.grad(cost, adv)
            adv = self._project(adv.detach(), images, grad)
        return adv
