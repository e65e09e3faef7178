"""L2 PGD with expectation over transformation: the L2 counterpart of ``torchattacks.EOTPGD`` (torchattacks has
none). In a module of its own so that torchattacks is imported only when an attack is built."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchattacks


class EOTPGDL2(torchattacks.PGDL2):
    """torchattacks' PGDL2 with the gradient summed over ``eot_iter`` forward/backward passes per step (EOT,
    Athalye et al. 2018): the L2 counterpart of ``torchattacks.EOTPGD``. The projection is safe at eps = 0."""

    def __init__(self, model: nn.Module, eps: float = 1.0, alpha: float = 0.2, steps: int = 10, eot_iter: int = 1,
                 random_start: bool = True, eps_for_division: float = 1e-10):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         eps_for_division=eps_for_division)
        self.attack = "EOTPGDL2"
        self.eot_iter = eot_iter
        self.supported_mode = ["default"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        loss = nn.CrossEntropyLoss()
        b = len(images)
        adv = images.clone().detach()
        if self.random_start:  # the same draws, in the same order, as PGDL2
            delta = torch.empty_like(adv).normal_()
            n = delta.view(b, -1).norm(p=2, dim=1).view(b, 1, 1, 1)
            r = torch.zeros_like(n).uniform_(0, 1)
            delta *= r / n * self.eps
            adv = torch.clamp(adv + delta, min=0, max=1).detach()
        for _ in range(self.steps):
            adv.requires_grad = True
            grad = torch.zeros_like(adv)
            for _ in range(self.eot_iter):
                cost = loss(self.get_logits(adv), labels)
                grad += torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
            grad_norms = torch.norm(grad.view(b, -1), p=2, dim=1) + self.eps_for_division
            grad = grad / grad_norms.view(b, 1, 1, 1)
            adv = adv.detach() + self.alpha * grad
            delta = adv - images
            delta_norms = torch.norm(delta.view(b, -1), p=2, dim=1).clamp_min(1e-12)
            factor = torch.min(self.eps / delta_norms, torch.ones_like(delta_norms))
            adv = torch.clamp(images + delta * factor.view(-1, 1, 1, 1), min=0, max=1).detach()
        return adv
