"""``--batch-size auto``: the largest batch that fits, found by halving on out-of-memory and cached per model,
device and precision.

On CUDA the probe is one forward and backward pass of log p~(x) with respect to the input (the largest per-image
footprint of the evaluators' passes: gradient scores, SGLD, attacks) on batches of ``START``, ``START / 2``, ...
rows until one fits. The answer is kept in memory and, with ``--cache-dir``, in ``<cache_dir>/batch-size.json``
under the key sha256(model fingerprint, device name, precision). On other devices auto is the fixed default
(``defaults.BATCH_SIZE``): CPU memory is not the limit there, and the probe would cost more than it saves.

The answer counts rows of one pass. An evaluator whose passes stack several rows per image divides it by that
multiplicity (robust: purification copies, times 1 + 2K for gradients through the unrolled chain;
:meth:`jembench.evaluators.robust_config.RobustConfig.batch`), knowing it was auto from
``SharedSettings.batch_auto``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import torch

from . import defaults
from .forward import model_fingerprint
from .io import atomic_write_text
from .models.hybrid import HybridModel

START = 4096
PROBE_DEVICES = ("cuda",)  # device types where auto probes (tests add "cpu" to probe a fake out-of-memory model)
CACHE_FILE = "batch-size.json"
_MEMORY: dict[str, int] = {}


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def largest_fitting(try_batch: Callable[[int], None], start: int = START) -> int:
    """The first of ``start, start // 2, ..., 1`` for which ``try_batch`` raises no out-of-memory error."""
    size = start
    while True:
        try:
            try_batch(size)
            return size
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is caught; anything else is re-raised
            if not is_out_of_memory(exc) or size == 1:
                raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        size //= 2


def cached(key: str, cache_dir: Optional[str | Path], find: Callable[[], int]) -> int:
    """``find()``, remembered under ``key`` in memory and in ``cache_dir``'s batch-size.json (when given)."""
    if key in _MEMORY:
        return _MEMORY[key]
    path = Path(cache_dir) / CACHE_FILE if cache_dir else None
    table: dict[str, int] = {}
    if path is not None and path.exists():
        try:
            table = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, TypeError, AttributeError):  # a corrupt file is rewritten
            table = {}
    if key not in table:
        table[key] = int(find())
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(table, indent=1, sort_keys=True))
    _MEMORY[key] = table[key]
    return table[key]


def _probe(model: HybridModel, size: int) -> None:
    x = torch.zeros((size, model.info.in_channels, *model.info.image_size), device=model.device, requires_grad=True)
    with torch.enable_grad():
        torch.autograd.grad(model.logits_and_log_px(x)[1].sum(), x)


def resolve(batch_size: Optional[int], model: HybridModel, cache_dir: Optional[str | Path] = None) -> int:
    """``batch_size`` itself, or for auto (None) the largest that fits ``model`` on its device (see above)."""
    if batch_size is not None:
        return int(batch_size)
    dev = model.device
    if dev.type not in PROBE_DEVICES:
        return defaults.BATCH_SIZE
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    key = hashlib.sha256(json.dumps([model_fingerprint(model), name, model.precision]).encode()).hexdigest()[:32]
    return cached(key, cache_dir, lambda: largest_fitting(lambda size: _probe(model, size)))
