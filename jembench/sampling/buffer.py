"""Replay buffer for persistent chains (PCD), JEM style: each draw restarts a fraction of chains."""

from __future__ import annotations

from typing import Callable, Optional

import torch

Init = Callable[..., torch.Tensor]  # (n, gen, y=None) -> x


class ReplayBuffer:
    """``size`` chains (and their class labels, for conditional restarts); ``reinit_freq`` of each draw
    comes fresh from ``init`` instead of the buffer (JEM: 0.05)."""

    def __init__(self, size: int, init: Init, gen: torch.Generator, *, reinit_freq: float = 0.05,
                 n_classes: Optional[int] = None, data: Optional[torch.Tensor] = None):
        self.init, self.gen, self.reinit_freq = init, gen, reinit_freq
        self.labels = (torch.randint(0, n_classes, (size,), generator=gen, device=gen.device)
                       if n_classes else None)
        self.data = data.clone() if data is not None else init(size, gen, self.labels)

    def __len__(self) -> int:
        return self.data.shape[0]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, idx)``: n chains drawn with replacement, a ``reinit_freq`` fraction of them restarted."""
        idx = torch.randint(0, len(self), (n,), generator=self.gen, device=self.gen.device)
        x = self.data[idx.to(self.data.device)]
        y = self.labels[idx] if self.labels is not None else None
        fresh = self.init(n, self.gen, y).to(x.device, x.dtype)
        restart = (torch.rand(n, generator=self.gen, device=self.gen.device) < self.reinit_freq).to(x.device)
        x = torch.where(restart.view(-1, *([1] * (x.dim() - 1))), fresh, x)
        return x, idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Write the advanced chains back to their slots."""
        self.data[idx.to(self.data.device)] = x.detach().to(self.data.device, self.data.dtype)

    def state(self) -> dict[str, torch.Tensor]:
        """Chain labels (the chains themselves are saved as the checkpoint's ``replay_buffer``)."""
        return {} if self.labels is None else {"labels": self.labels.cpu()}

    def load(self, data: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        """Restore chains and labels saved by :meth:`state` (resume)."""
        if data.shape != self.data.shape:
            raise ValueError(f"replay buffer shape {tuple(data.shape)} != expected {tuple(self.data.shape)}")
        self.data = data.to(self.data.device, self.data.dtype).clone()
        if "labels" in state and self.labels is not None:
            self.labels = state["labels"].to(self.labels.device)
