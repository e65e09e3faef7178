"""Non-finite numbers are failures, never results: checked once where weights are loaded and where logits are made.

A NaN weight makes every argmax class 0 (accuracy 1/C, reported as if measured) and every log p~(x) NaN; an inf
makes FID meaningless. :func:`check_state` refuses such a checkpoint at load, naming the tensors;
:func:`check_outputs` fails the evaluation step whose model call produced NaN or inf logits or log p~(x).
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import CheckpointError, NonFiniteError


def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """``"class_output.weight (3 NaN, 1 inf of 640 values)"`` for each floating tensor holding NaN or inf."""
    found = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or bool(torch.isfinite(t).all()):
            continue
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        what = ", ".join(f"{k} {w}" for k, w in ((nan, "NaN"), (inf, "inf")) if k)
        found.append(f"{name} ({what} of {t.numel()} values)")
    return found


def check_state(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights or buffers holding NaN or inf (one line naming up to three tensors)."""
    bad = nonfinite_tensors(tensors)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError(f"{where}: non-finite weights or buffers in {len(bad)} tensor(s): {'; '.join(bad[:3])}"
                              f"{more}; every number computed from it would be meaningless: use an earlier "
                              "checkpoint (training diverged, or the file was damaged)")


def check_outputs(model_name: str, **outputs: torch.Tensor) -> None:
    """Fail when a model call produced NaN or inf (``logits=...``, ``log_px=...``)."""
    for what, t in outputs.items():
        if not bool(torch.isfinite(t.detach()).all()):
            n = int((~torch.isfinite(t.detach())).reshape(t.shape[0], -1).any(1).sum()) if t.dim() else 1
            raise NonFiniteError(f"checkpoint {model_name!r} produced non-finite {what} (NaN or inf) for {n} of "
                                 f"{t.shape[0] if t.dim() else 1} input(s); its numbers would be meaningless, so this "
                                 "evaluation stops (check the checkpoint: `jembench inspect`, and the inputs' range)")
