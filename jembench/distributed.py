"""Sharding over torchrun: each rank evaluates a contiguous block of sample indices, results are gathered in
index order, and rank 0 alone writes files.

``torchrun --nproc-per-node N -m jembench ...`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous
variables; :func:`init` joins the process group from them (gloo on CPU, nccl on CUDA, each rank on
``cuda:LOCAL_RANK``). Without them (or with ``WORLD_SIZE=1``) every function here is the identity of a single
process, so evaluators call them unconditionally.

Samples ``[0, n)`` are split into ``world_size`` contiguous blocks (:func:`shard`; a block boundary may be held
to a multiple of ``align``, e.g. the batch size of code whose draws are still keyed per batch). Because every
random draw of a per-sample pass is keyed by the sample's index (or by a batch index, with aligned blocks), a
rank computes exactly the values a single process computes for its samples, and :func:`gather` concatenates the
blocks back in index order: the numbers equal a single-process run with the same seed.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` (``local_rank`` on its node), the backend."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: Optional[str] = None  # None for a single process

    @property
    def main(self) -> bool:
        return self.rank == 0


_WORLD = World()


def _env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun set it (1 outside torchrun); read without importing torch."""
    return max(1, _env("WORLD_SIZE", 1))


def env_rank() -> int:
    """``RANK`` as torchrun set it (0 outside torchrun): the CLI quiets ranks > 0 before anything runs."""
    return _env("RANK", 0) if env_world_size() > 1 else 0


def init(device: Any = None) -> World:
    """Join torchrun's process group once (idempotent); returns :func:`world`. ``device`` picks the backend:
    nccl when it is CUDA, else gloo."""
    global _WORLD
    import torch
    import torch.distributed as dist

    if env_world_size() == 1 or _WORLD.size > 1:
        return _WORLD
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda" if device is not None else False
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(_env("LOCAL_RANK", 0))
        dist.init_process_group(backend)
        atexit.register(dist.destroy_process_group)
    _WORLD = World(dist.get_world_size(), dist.get_rank(), _env("LOCAL_RANK", 0), dist.get_backend())
    if _WORLD.rank:  # progress shows on rank 0 only, for the API as well as the CLI
        from . import progress

        progress.ENABLED = False
    return _WORLD


def start(device: "torch.device") -> "torch.device":
    """This rank's device (:func:`local_device`), the process group joined (:func:`init`)."""
    device = local_device(device)
    init(device)
    return device


def world() -> World:
    return _WORLD


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and shows progress."""
    return _WORLD.main


def local_device(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:LOCAL_RANK`` under torchrun (one GPU per rank); other devices unchanged."""
    if env_world_size() > 1 and device.type == "cuda" and device.index is None:
        import torch

        return torch.device("cuda", _env("LOCAL_RANK", 0))
    return device


def shard(n: int, align: int = 1) -> tuple[int, int]:
    """This rank's block ``[lo, hi)`` of ``n`` samples: contiguous, in rank order, sizes as equal as blocks of
    ``align`` samples allow (the last block may be short)."""
    blocks = -(-n // align)
    lo, hi = (blocks * _WORLD.rank) // _WORLD.size, (blocks * (_WORLD.rank + 1)) // _WORLD.size
    return min(n, lo * align), min(n, hi * align)


def _comm_device() -> "torch.device":
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if _WORLD.backend == "nccl" else torch.device("cpu")


def gather(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's block of a per-sample tensor (dimension ``dim``: samples, e.g. 1 for ``[steps, chains]``
    traces), concatenated in rank order, i.e. in sample-index order, on every rank (on ``t``'s device and dtype)."""
    if _WORLD.size == 1:
        return t
    if dim:
        return gather(t.movedim(dim, 0).contiguous()).movedim(0, dim)
    import torch
    import torch.distributed as dist

    dev = _comm_device()
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(_WORLD.size)]
    dist.all_gather(sizes, torch.tensor([t.shape[0]], dtype=torch.int64, device=dev))
    sizes = [int(s) for s in sizes]
    wire = t.to(torch.uint8) if t.dtype == torch.bool else t
    padded = torch.zeros((max(sizes), *t.shape[1:]), dtype=wire.dtype, device=dev)
    padded[:t.shape[0]] = wire.to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(t.device, t.dtype)


def map_batches(x: torch.Tensor, batch_size: int, fn: Callable[[torch.Tensor], torch.Tensor],
                empty: torch.Tensor) -> torch.Tensor:
    """``fn(batch)`` (per-sample outputs) over this rank's whole batches of ``x`` (:func:`shard` aligned to
    ``batch_size``: the batches of one process), concatenated and gathered in sample order on every rank;
    ``empty`` is the output of no samples."""
    import torch

    lo, hi = shard(len(x), align=batch_size)
    parts = [fn(x[s:min(s + batch_size, hi)]) for s in range(lo, hi, batch_size)]
    return gather(torch.cat(parts) if parts else empty)


def total(value: int | float) -> int | float:
    """The sum of ``value`` over ranks (pass counts of sharded work)."""
    if _WORLD.size == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return type(value)(t.item())


def from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (decisions only rank 0 can take: what its files say)."""
    if _WORLD.size == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def describe() -> dict[str, Any]:
    """The provenance record: world size, backend, and how work was split."""
    return {"world_size": _WORLD.size, "backend": _WORLD.backend,
            "sharding": "contiguous blocks of sample indices per rank, gathered in index order" if _WORLD.size > 1
            else None}
