"""Accuracy evaluator: top-1 accuracy (95% Wilson interval), NLL, Brier score, per-class accuracy and the
confusion matrix, all read from the shared forward pass (:class:`jembench.forward.ForwardCache`).

The forward-pass settings (:class:`ForwardSettings`: split, JEM-K refinement, interval level) and plumbing
(:func:`forward_passes`, :func:`base_protocol`, :func:`write_raw_arrays`) are shared with the calibration
evaluator (:mod:`jembench.evaluators.calib`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from ..io import atomic_savez
from ..preflight import eval_set_problems
from ..results import Evaluation, EvaluatorResult
from ..settings import Settings, Spelling, option
from .base import Context, Evaluator, SharedSettings
from ..cost import Cost
from .common import default_dataset, eval_set_size, forward_key, load_eval_set, summary_table

if TYPE_CHECKING:  # torch-backed: imported where used, so the settings and the registry entry stay light
    from ..data.imageset import ImageSet
    from ..forward import ForwardPass
    from ..models import HybridModel
    from ..sampling.sgld import SGLDConfig

NAME = "clf"
SHARED = ("dataset", "n", "sigma", "seed", "device", "batch_size", "data_dir",
          "download", "head", "norm", "cache_dir", "precision")

# metric names (``n`` is the number of evaluated images)
ACCURACY, ERROR, NLL, BRIER, N = "accuracy", "error", "nll", "brier", "n"


@dataclass(frozen=True)
class ForwardSettings(Settings):
    """What decides the forward pass beyond the shared dataset / N / sigma: split and JEM-K refinement."""

    split: str = option("test", "Dataset split to evaluate.")
    refine_steps: int = option(0, "JEM-K: SGLD steps on each test input before classifying (JEM's test_clf "
                                  "--n_steps).", min=0)
    refine_step_size: float = option(1.0, "SGLD step size of the refinement (JEM: 1).", min=0, unit="model space")
    refine_noise: float = option(0.01, "SGLD noise of the refinement (JEM: 0.01).", min=0, unit="model space")
    level: float = option(0.95, "Confidence level of the intervals (Wilson for accuracy, bootstrap for "
                                "calibration).", above=0, max=0.999999)

    def refine(self) -> Optional[SGLDConfig]:
        """The JEM-K refinement config (None for K = 0): JEM's test_clf SGLD, no clamping."""
        from ..sampling.sgld import SGLDConfig

        if not self.refine_steps:
            return None
        return SGLDConfig(steps=self.refine_steps, step_size=self.refine_step_size, noise=self.refine_noise)


@dataclass(frozen=True)
class ClfSettings(ForwardSettings):
    """Settings of ``jembench clf``."""


@dataclass
class ClfResult(EvaluatorResult):
    """:class:`EvaluatorResult` of ``clf`` (and ``calib``), with the metrics of its terminal table."""

    summary_metrics: tuple[str, ...] = (ACCURACY, NLL, BRIER)

    def table(self) -> str:
        """The comparison table printed by the CLI: one row per checkpoint."""
        return summary_table(self.evaluations, self.summary_metrics)


def forward_passes(models: list[HybridModel], s: ForwardSettings, shared: SharedSettings, ctx: Context
                   ) -> Iterator[tuple[HybridModel, ImageSet, ForwardPass, float]]:
    """For each model: (model, evaluation set, its forward pass, ``time.perf_counter()`` before the pass).
    The dataset defaults to each checkpoint's own; every set is loaded and checked before any pass."""
    sets = [load_eval_set(m, shared.dataset, s.split, data_dir=shared.data_dir, download=shared.download,
                          n=shared.n) for m in models]
    for model, imageset in zip(models, sets):
        start = time.perf_counter()
        fp = ctx.cache.get(model, imageset, sigma=shared.sigma, seed=shared.seed, refine=s.refine(),
                           batch_size=shared.batch_size, progress=ctx.progress)
        yield model, imageset, fp, start


def forward_preflight(models: list[HybridModel], s: ForwardSettings, shared: SharedSettings,
                      spell: Spelling) -> Iterable[str]:
    """Each model's evaluation set (split ``s.split``) is present, labelled, of its shape and class count."""
    for m in models:
        yield from eval_set_problems(m, shared.dataset or default_dataset(m), s.split, data_dir=shared.data_dir,
                                     download=shared.download)


def forward_cost(s: ForwardSettings, shared: SharedSettings, model: HybridModel) -> list[Cost]:
    """One forward pass per image; JEM-K adds K SGLD steps (1 forward + 1 backward each) before it."""
    name, n = eval_set_size(model, shared.dataset, s.split, shared.n)
    k = s.refine_steps
    return [Cost(f"forward {name}/{s.split}" + (f", JEM-{k}" if k else ""), n, n * (1 + k), n * k, sampler_steps=n * k,
                 shared=forward_key(name, s.split, n, shared.sigma, shared.seed, s.refine()))]


def base_protocol(fp: ForwardPass, imageset: ImageSet, seed: int) -> dict[str, Any]:
    """The forward pass's protocol (dataset, split, N, sigma, noise seed, refinement) plus the data's origin."""
    return {**fp.protocol, "dataset_meta": dict(imageset.meta), "seed": int(seed)}


def write_raw_arrays(out_dir: str | Path, evaluator: str, slug: str, **arrays: Any) -> str:
    """Write per-sample arrays to ``out_dir/raw/<evaluator>-<slug>.npz`` (atomic); return the relative path."""
    rel = f"raw/{evaluator}-{slug}.npz"
    atomic_savez(Path(out_dir) / rel, **arrays)
    return rel


def clf_evaluation(fp: ForwardPass, model: HybridModel, imageset: ImageSet, *, seed: int,
                   level: float = 0.95) -> Evaluation:
    """Accuracy metrics of one forward pass as an :class:`Evaluation`."""
    from ..metrics import accuracy_wilson, brier, confusion_matrix, nll, per_class_accuracy

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
    return Evaluation(NAME, model.info.to_dict(), protocol,
                      metrics={ACCURACY: acc, ERROR: 1 - acc, NLL: nll(fp.logits, labels), BRIER: brier(probs, labels),
                               N: len(labels)},
                      intervals={ACCURACY: [lo, hi], ERROR: [1 - hi, 1 - lo]}, rows=rows, warnings=warnings)


def run(models: list[HybridModel], s: ClfSettings, shared: SharedSettings, ctx: Context) -> list[Evaluation]:
    """Accuracy, NLL, Brier, per-class accuracy and confusion matrix of each model (``raw/*.npz`` with save_raw)."""
    evaluations = []
    for model, imageset, fp, start in forward_passes(models, s, shared, ctx):
        ev = clf_evaluation(fp, model, imageset, seed=shared.seed, level=s.level)
        if ctx.save_raw and ctx.out_dir is not None:
            ev.artifacts["raw"] = write_raw_arrays(ctx.out_dir, NAME, ctx.slug(model), probs=fp.probs,
                                                   logits=fp.logits, log_px=fp.log_px, labels=fp.labels)
        ev.wall_time_s = time.perf_counter() - start
        evaluations.append(ev)
    return evaluations


EVALUATOR = Evaluator(
    name=NAME, title="Accuracy", settings=ClfSettings, run=run, result=ClfResult, summary=ClfResult.table,
    shared=SHARED, headline=(ACCURACY, NLL), headline_last=False, metrics=(ACCURACY, ERROR, NLL, BRIER, N),
    figures="Accuracy figures", uses_forward_cache=True, preflight=forward_preflight,
    cost=forward_cost,
    short_help="Accuracy (95% Wilson interval), NLL, Brier score, per-class accuracy, confusion matrix.",
    help="""Accuracy (95% Wilson interval), NLL, Brier score, per-class accuracy and confusion matrix.

    \b
    Examples:
      jembench clf bundled:jem-digits --dataset digits
      jembench clf jem.pt jempp.pt --dataset cifar10 --sigma 0.03     (the JEM scripts' test noise)
      jembench clf jem.pt --refine-steps 10 --n 1000                    (JEM-10)
      jembench clf --cache-dir ~/.cache/jembench/forward                (CKPT from $JEMBENCH_CKPT)

    Writes OUT_DIR/results.json (metrics and the full protocol) and, with --save-raw,
    OUT_DIR/raw/*.npz (probabilities, logits, log p(x), labels). Several CKPTs: one comparison table.
    """)

clf = EVALUATOR.function()
