"""Random draws keyed by sample index: the one mechanism behind every draw that must not depend on the batch size,
the batch order or the number of ranks.

Sample ``i``'s draws for a purpose (``labels``, e.g. ``("test-noise",)``) come from chunk ``j = i // chunk``: a
``torch.Generator`` seeded ``derive_seed(seed, *labels, j)`` draws ``chunk`` samples' worth and sample ``i`` takes
row ``i - j * chunk``. Any contiguous range ``[start, stop)`` therefore gets the same rows however it is split.
Test noise and JEM-K refinement use chunks of ``NOISE_CHUNK`` = 1024 (their recipe since 0.1.0); every other keyed
draw (recipe ``per-sample v2``: attack random starts, purification / EOT noise, sampling chains, PCD rounds'
advance noise, AIS chains, score-matching noise) uses chunks of ``SAMPLE_CHUNK`` = 64, so a small batch wastes
little.

:class:`KeyedNoise` hands such draws to code written against a generator (``runtime.randn``, the samplers): its
``t``-th draw gives row block ``g`` (rows ``[g * n, (g + 1) * n)``, each a copy of samples ``[start, stop)``) the
rows keyed ``(seed, *labels, *groups[g], t)``; :class:`StackedNoise` stacks several of them (rows of different
purposes or ranges in one batch, e.g. forward and reverse AIS chains).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from .runtime import derive_seed, generator

if TYPE_CHECKING:  # imported when drawing: the recipe's name is recorded by modules that listing commands read
    import torch

NOISE_CHUNK = 1024
SAMPLE_CHUNK = 64
RECIPE = "per-sample v2"
RECIPE_TEXT = (f"{RECIPE}: sample i's draws for a purpose come from chunk j = i // {SAMPLE_CHUNK}, a torch.Generator "
               f"seeded derive_seed(seed, *purpose, j) (jembench.rng.keyed)")
KINDS = ("randn", "rand")


def keyed(start: int, stop: int, shape: tuple[int, ...], seed: int, *labels: object, kind: str = "randn",
          chunk: int = NOISE_CHUNK) -> torch.Tensor:
    """``[stop - start, *shape]`` float32 CPU draws (``randn``: N(0, 1); ``rand``: U[0, 1)) of samples
    ``[start, stop)``, chunk j from ``derive_seed(seed, *labels, j)``: the same per sample however the range is
    batched."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    draw = torch.randn if kind == "randn" else torch.rand
    parts = []
    for j in range(start // chunk, (stop - 1) // chunk + 1):
        lo, hi = j * chunk, (j + 1) * chunk
        rows = draw((chunk, *shape), generator=generator(derive_seed(seed, *labels, j)))
        parts.append(rows[max(start, lo) - lo:min(stop, hi) - lo])
    return torch.cat(parts) if parts else torch.empty((0, *shape))


class KeyedNoise:
    """Draws for rows that are ``len(groups)`` row blocks, each a copy of samples ``[start, stop)``; the ``t``-th
    call (counted by ``self.draws``) gives block ``g`` the rows keyed ``(seed, *labels, *groups[g], t)``."""

    def __init__(self, seed: int, start: int, stop: int, *labels: object,
                 groups: Optional[Sequence[tuple]] = None, chunk: int = SAMPLE_CHUNK):
        self.seed, self.start, self.stop, self.labels, self.chunk = int(seed), int(start), int(stop), labels, chunk
        self.groups = list(groups) if groups is not None else [()]
        self.draws = 0

    @property
    def n(self) -> int:
        return self.stop - self.start

    def _draw(self, shape: tuple[int, ...], kind: str) -> torch.Tensor:
        import torch

        if shape[0] != self.n * len(self.groups):
            raise ValueError(f"keyed draw of {shape[0]} rows for {len(self.groups)} x {self.n} samples")
        t, self.draws = self.draws, self.draws + 1
        return torch.cat([keyed(self.start, self.stop, tuple(shape[1:]), self.seed, *self.labels, *g, t, kind=kind,
                                chunk=self.chunk) for g in self.groups])

    def randn(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """N(0, I) rows, on ``like``'s device and dtype."""
        return self._draw(shape, "randn").to(like.device, like.dtype)

    def rand(self, shape: tuple[int, ...], like: Optional[torch.Tensor] = None) -> torch.Tensor:
        """U[0, 1) rows (on ``like``'s device and dtype when given)."""
        u = self._draw(shape, "rand")
        return u if like is None else u.to(like.device, like.dtype)


class StackedNoise:
    """Draws for a batch whose rows are several keyed blocks one after another (each a :class:`KeyedNoise`, e.g.
    forward then reverse AIS chains): every block gets its own keyed rows, as if it were drawn alone."""

    def __init__(self, parts: Sequence[KeyedNoise]):
        self.parts = list(parts)

    def _split(self, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        sizes = [p.n * len(p.groups) for p in self.parts]
        if shape[0] != sum(sizes):
            raise ValueError(f"keyed draw of {shape[0]} rows for blocks of {sizes} rows")
        return [(size, *shape[1:]) for size in sizes]

    def randn(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.cat([p.randn(s, like) for p, s in zip(self.parts, self._split(shape))])

    def rand(self, shape: tuple[int, ...], like: Optional[torch.Tensor] = None) -> torch.Tensor:
        import torch

        return torch.cat([p.rand(s, like) for p, s in zip(self.parts, self._split(shape))])
