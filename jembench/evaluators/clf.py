"""Accuracy evaluator: top-1 accuracy (95% Wilson interval), NLL, Brier score, per-class accuracy and the
confusion matrix, all read from the shared forward pass (:class:`jembench.forward.ForwardCache`).

The forward-pass plumbing here (:func:`forward_passes`, :func:`base_protocol`, :func:`write_raw_arrays`) is shared
with the calibration evaluator (:mod:`jembench.evaluators.calib`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .. import defaults
from ..data.imageset import ImageSet
from ..errors import JembenchError
from ..forward import ForwardCache, ForwardPass
from ..metrics import accuracy_wilson, brier, confusion_matrix, nll, per_class_accuracy
from ..models import HybridModel
from ..results import Evaluation, EvaluatorResult, slugify, atomic_savez
from ..runtime import resolve_device
from ..sampling.sgld import SGLDConfig
from .common import finish, load_eval_set, load_models, summary_table

Checkpoints = str | Path | HybridModel | Sequence[str | Path | HybridModel]


@dataclass
class ClfResult(EvaluatorResult):
    """:class:`EvaluatorResult` of ``clf`` (and ``calib``), with the metrics of its terminal table."""

    summary_metrics: tuple[str, ...] = ("accuracy", "nll", "brier")

    def table(self) -> str:
        """The comparison table printed by the CLI: one row per checkpoint."""
        return summary_table(self.evaluations, self.summary_metrics)


def refine_config(steps: int = defaults.REFINE_STEPS, step_size: float = defaults.REFINE_STEP_SIZE,
                  noise: float = defaults.REFINE_NOISE) -> Optional[SGLDConfig]:
    """The JEM-K refinement config (None for K = 0): JEM's test_clf SGLD, no clamping."""
    if steps < 0:
        raise JembenchError(f"--refine-steps must be >= 0, got {steps}")
    return SGLDConfig(steps=steps, step_size=step_size, noise=noise) if steps else None


def forward_passes(checkpoints: Checkpoints, dataset: Optional[str], *, split: str, sigma: float, seed: int,
                   refine: Optional[SGLDConfig], cache: Optional[ForwardCache], device: Any, batch_size: int,
                   data_dir: Any, download: bool, n: Optional[int], head: Optional[str],
                   ) -> Iterator[tuple[HybridModel, ImageSet, ForwardPass, float]]:
    """For each checkpoint: (model, evaluation set, its forward pass, ``time.perf_counter()`` before the pass).

    The dataset defaults to each checkpoint's own (JEM / JEM++ files: CIFAR-10); all checks raise one-line errors
    before any pass runs."""
    if isinstance(checkpoints, (str, Path, HybridModel)):
        checkpoints = [checkpoints]
    if n is not None and n < 1:
        raise JembenchError(f"--n must be >= 1, got {n}")
    cache = cache if cache is not None else ForwardCache()
    models = load_models(list(checkpoints), resolve_device(device), dataset=dataset, head=head)
    sets = [load_eval_set(m, dataset, split, data_dir=data_dir, download=download, n=n) for m in models]
    for model, imageset in zip(models, sets):
        start = time.perf_counter()
        fp = cache.get(model, imageset, sigma=sigma, seed=seed, refine=refine, batch_size=batch_size)
        yield model, imageset, fp, start


def base_protocol(fp: ForwardPass, imageset: ImageSet, seed: int) -> dict[str, Any]:
    """The forward pass's protocol (dataset, split, N, sigma, noise seed, refinement) plus the data's origin."""
    return {**fp.protocol, "dataset_meta": dict(imageset.meta), "seed": int(seed)}


def safe_name(model: HybridModel) -> str:
    """The checkpoint's name, usable in a file name."""
    return slugify(model.info.name or "model", "model")


def write_raw_arrays(out_dir: str | Path, evaluator: str, index: int, model: HybridModel, **arrays: Any) -> str:
    """Write per-sample arrays to ``out_dir/raw/<evaluator>-<index>-<name>.npz`` (atomic); return the relative path."""
    rel = f"raw/{evaluator}-{index}-{safe_name(model)}.npz"
    atomic_savez(Path(out_dir) / rel, **arrays)
    return rel


def clf_evaluation(fp: ForwardPass, model: HybridModel, imageset: ImageSet, *, seed: int,
                   level: float = defaults.CLF_INTERVAL_LEVEL) -> Evaluation:
    """Accuracy metrics of one forward pass as an :class:`Evaluation`."""
    probs, labels = fp.probs, fp.labels
    k = model.info.n_classes
    acc, lo, hi = accuracy_wilson(probs, labels, level)
    cm = confusion_matrix(probs.argmax(-1), labels, k)
    per_class = per_class_accuracy(cm)
    rows = [{"class": c, "n": int(cm[c].sum()), "accuracy": float(per_class[c]), "predicted": int(cm[:, c].sum()),
             "confusion": cm[c].tolist()} for c in range(k)]
    protocol = {**base_protocol(fp, imageset, seed), "interval": f"wilson {level:.0%}",
                "nll": "mean natural-log NLL", "brier": "mean over samples of sum over classes of (p - onehot)^2",
                "confusion": "rows: true class, confusion: counts per predicted class"}
    absent = [c for c in range(k) if int(cm[c].sum()) == 0]
    warnings = [f"{len(absent)} of {k} classes have no samples in the evaluation set (their accuracy is NaN): "
                + ", ".join(map(str, absent[:20])) + (", ..." if len(absent) > 20 else "")] if absent else []
    return Evaluation("clf", model.info.to_dict(), protocol,
                      metrics={"accuracy": acc, "error": 1 - acc, "nll": nll(fp.logits, labels),
                               "brier": brier(probs, labels), "n": len(labels)},
                      intervals={"accuracy": [lo, hi], "error": [1 - hi, 1 - lo]}, rows=rows, warnings=warnings)


def clf(checkpoints: Checkpoints, dataset: Optional[str] = None, *, split: str = defaults.CLF_SPLIT,
        sigma: float = defaults.TEST_SIGMA, seed: int = defaults.SEED, out_dir: Optional[str | Path] = None,
        cache: Optional[ForwardCache] = None, device: Any = defaults.DEVICE, batch_size: int = defaults.BATCH_SIZE,
        data_dir: Any = None, download: bool = False, n: Optional[int] = None, head: Optional[str] = None,
        refine_steps: int = defaults.REFINE_STEPS, refine_step_size: float = defaults.REFINE_STEP_SIZE,
        refine_noise: float = defaults.REFINE_NOISE, save_raw: bool = False,
        level: float = defaults.CLF_INTERVAL_LEVEL) -> ClfResult:
    """Accuracy (Wilson interval), NLL, Brier score, per-class accuracy and confusion matrix of each checkpoint
    (paths or HybridModels) on ``dataset`` (default: each checkpoint's own). Mirrors ``jembench clf``; writes
    ``out_dir/results.json`` when ``out_dir`` is given (and ``raw/*.npz`` with ``save_raw``)."""
    refine = refine_config(refine_steps, refine_step_size, refine_noise)
    evaluations = []
    for i, (model, imageset, fp, start) in enumerate(forward_passes(
            checkpoints, dataset, split=split, sigma=sigma, seed=seed, refine=refine, cache=cache, device=device,
            batch_size=batch_size, data_dir=data_dir, download=download, n=n, head=head)):
        ev = clf_evaluation(fp, model, imageset, seed=seed, level=level)
        if save_raw and out_dir is not None:
            ev.artifacts["raw"] = write_raw_arrays(out_dir, "clf", i, model, probs=fp.probs, logits=fp.logits,
                                           log_px=fp.log_px, labels=fp.labels)
        ev.wall_time_s = time.perf_counter() - start
        evaluations.append(ev)
    config = {"evaluator": "clf", "dataset": dataset, "split": split, "sigma": sigma, "n": n, "head": head,
              "batch_size": batch_size, "refine": refine.to_dict() if refine else None, "level": level}
    doc = finish(out_dir, evaluations, device=resolve_device(device), seed=seed, config=config)
    return ClfResult(evaluations, doc)
