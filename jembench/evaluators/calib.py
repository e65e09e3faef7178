"""Calibration evaluator: ECE (equal-width and equal-mass bins), MCE, RMS calibration error and classwise ECE
with seeded bootstrap intervals, a reliability diagram, and temperature scaling as a reference (never applied
to the reported numbers), all read from the shared forward pass.

Temperature scaling (Guo et al. 2017): a seeded permutation splits the evaluation set; T is fitted on the first
``ts_fraction`` (minimum NLL, T in [1e-4, 1e4]) and ECE / NLL before and after are reported on the rest, under the
``temperature_scaling/`` metric names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import background
from ..results import Evaluation
from ..runtime import derive_seed, generator
from ..settings import hint, option
from .base import Context, Evaluator, SharedSettings
from .clf import (ACCURACY, SHARED, ClfResult, ForwardSettings, base_protocol, forward_cost, forward_passes,
                  forward_preflight, write_raw_arrays)

if TYPE_CHECKING:  # torch-backed: imported where used, so the settings and the registry entry stay light
    from ..data.imageset import ImageSet
    from ..forward import ForwardPass
    from ..models import HybridModel

NAME = "calib"
# metric names; temperature_scaling/* are the reference row (never applied to the headline numbers)
ECE, ADAPTIVE_ECE, MCE, RMS_CE, CLASSWISE_ECE = "ece", "adaptive_ece", "mce", "rms_ce", "classwise_ece"
MEAN_CONFIDENCE, TS = "mean_confidence", "temperature_scaling"
TS_TEMPERATURE = f"{TS}/temperature"


@dataclass(frozen=True)
class CalibSettings(ForwardSettings):
    """Settings of ``jembench calib``: the forward pass's, plus binning, bootstrap and the temperature fit."""

    bins: int = option(15, "Equal-width confidence bins (lo, hi]; JEM++ reports 20 (Guo et al. 2017: 15).", min=1)
    bootstrap: int = option(1000, "Bootstrap resamples for the intervals (0 = none).", min=0)
    ts_fraction: float = option(0.5, "Seeded share of the evaluation set that fits the reference temperature; "
                                     "it is reported on the rest.", above=0, max=0.999999)


BINNING = ("equal-width bins (lo, hi] on the max softmax probability, 0 in the first bin and 1.0 in the last; "
           "adaptive_ece: equal-mass bins; classwise_ece: per-class probability vs 1[y = k], averaged over classes; "
           "rms_ce = sqrt(sum_b n_b/N (acc_b - conf_b)^2) (torchmetrics norm='l2')")


@dataclass
class CalibResult(ClfResult):
    """Result of :func:`calib`; its comparison table shows the calibration errors."""

    summary_metrics: tuple[str, ...] = (ACCURACY, ECE, ADAPTIVE_ECE, MCE, RMS_CE, CLASSWISE_ECE, TS_TEMPERATURE)


TEMPERATURE_BOUNDS = (1e-4, 1e4)


def temperature_reference(fp: ForwardPass, bins: int, fraction: float, seed: int) -> dict[str, float]:
    """Fit T on a seeded ``fraction`` of the pass, report ECE / NLL before and after on the rest."""
    import torch

    from ..metrics import ece, fit_temperature, nll

    n = fp.logits.shape[0]
    n_fit = int(round(n * fraction))
    perm = torch.randperm(n, generator=generator(derive_seed(seed, "temperature-split")))
    fit, held = perm[:n_fit], perm[n_fit:]
    t = fit_temperature(fp.logits[fit], fp.labels[fit], bounds=TEMPERATURE_BOUNDS)
    z, y = fp.logits[held], fp.labels[held]
    return {TS_TEMPERATURE: t, f"{TS}/n_fit": n_fit, f"{TS}/n_eval": int(held.numel()),
            f"{TS}/ece_before": ece(z.softmax(-1), y, bins), f"{TS}/ece_after": ece((z / t).softmax(-1), y, bins),
            f"{TS}/nll_before": nll(z, y), f"{TS}/nll_after": nll(z / t, y)}


def calib_evaluation(fp: ForwardPass, model: HybridModel, imageset: ImageSet, *, seed: int, bins: int,
                     bootstrap: int, level: float, ts_fraction: float, progress: bool = False) -> Evaluation:
    """Calibration metrics of one forward pass as an :class:`Evaluation` (no figure; see :func:`calib`)."""
    from ..metrics import accuracy_wilson, bootstrap_calibration_errors, calibration_errors, reliability_bins

    probs, labels = fp.probs, fp.labels
    n = len(labels)
    acc = accuracy_wilson(probs, labels)[0]
    metrics: dict[str, float] = {ACCURACY: acc, MEAN_CONFIDENCE: float(probs.max(-1).values.mean()), "n": n}
    intervals: dict[str, list[float]] = {}
    boot_seed = derive_seed(seed, "calib-bootstrap")
    metrics.update(calibration_errors(probs, labels, bins))
    if bootstrap:  # one set of resamples for all five
        cis = bootstrap_calibration_errors(probs, labels, bins, n_boot=bootstrap, level=level, seed=boot_seed,
                                           progress=progress)
        intervals.update({k: list(v) for k, v in cis.items()})
    warnings = []
    if n < 2 * bins * 10:
        warnings.append(f"only {n} samples for {bins} bins: binned calibration errors are biased upward with few "
                        f"samples per bin; use more samples or fewer {hint(NAME, 'bins')}")
    fit_n = int(round(n * ts_fraction))
    if 0 < fit_n < n:
        metrics.update(temperature_reference(fp, bins, ts_fraction, seed))
        t = metrics[TS_TEMPERATURE]
        if t in TEMPERATURE_BOUNDS:
            why = "every prediction on the fit split is right" if t == TEMPERATURE_BOUNDS[0] else \
                "the predictions on the fit split are no better than uniform"
            warnings.append(f"the fitted temperature sits at its bound {t:g}: {why}, so NLL has no interior minimum")
    else:
        warnings.append(f"temperature scaling skipped: a {ts_fraction:g} split of {n} samples leaves a side empty")
    table = reliability_bins(probs, labels, bins)
    rows = [{"bin": b, "lo": float(table["lo"][b]), "hi": float(table["hi"][b]), "count": int(table["count"][b]),
             "confidence": float(table["confidence"][b]) if table["count"][b] else None,
             "accuracy": float(table["accuracy"][b]) if table["count"][b] else None} for b in range(bins)]
    protocol = {**base_protocol(fp, imageset, seed), "bins": bins, "binning": BINNING,
                "bootstrap": {"resamples": bootstrap, "level": level, "method": "percentile",
                              "seed": boot_seed} if bootstrap else None,
                "temperature_scaling": {"fit_fraction": ts_fraction,
                                        "split_seed": derive_seed(seed, "temperature-split"),
                                        "fit": "minimum NLL over T in [1e-4, 1e4] (Newton on 1/T)", "applied": False}}
    return Evaluation(NAME, model.info.to_dict(), protocol, metrics=metrics, intervals=intervals, rows=rows,
                      warnings=warnings)


def write_reliability_figure(ev: Evaluation, fp: ForwardPass, bins: int, out_dir: str | Path, slug: str,
                             model: HybridModel) -> str:
    """Have the reliability diagram (confidence histogram under it) written as PNG through the figure queue
    (:mod:`jembench.background`); return its path relative to out_dir."""
    from ..metrics import reliability_bins

    rel = f"figures/reliability-{slug}.png"
    title = f"{model.info.name} on {ev.protocol['dataset']} ({ev.protocol['split']})"
    background.render(f"reliability diagram {rel}", _draw_reliability, reliability_bins(fp.probs, fp.labels, bins),
                      title, ev.metrics[ECE], Path(out_dir) / rel)
    return rel


def _draw_reliability(table: dict, title: str, ece_value: float, path: Path) -> dict[Path, bytes]:
    """The reliability diagram as the PNG file ``path`` (a figure-worker job, :mod:`jembench.background`)."""
    from ..figures import png_file
    from ..figures.calibration import reliability_diagram

    return png_file(reliability_diagram(table, title=title, ece_value=ece_value), path)


def run(models: list[HybridModel], s: CalibSettings, shared: SharedSettings, ctx: Context) -> list[Evaluation]:
    """ECE (equal-width bins), adaptive ECE, MCE, RMS-CE and classwise ECE with bootstrap intervals, a reliability
    diagram (with an out_dir) and a temperature-scaling reference for each model."""
    evaluations = []
    for model, imageset, fp, start in forward_passes(models, s, shared, ctx):
        ev = calib_evaluation(fp, model, imageset, seed=shared.seed, bins=s.bins, bootstrap=s.bootstrap,
                              level=s.level, ts_fraction=s.ts_fraction, progress=ctx.progress)
        if ctx.out_dir is not None:
            ev.artifacts["reliability"] = write_reliability_figure(ev, fp, s.bins, ctx.out_dir, ctx.slug(model),
                                                                   model)
            if ctx.save_raw:
                ev.artifacts["raw"] = write_raw_arrays(ctx.out_dir, NAME, ctx.slug(model), probs=fp.probs,
                                                       labels=fp.labels)
        ev.wall_time_s = time.perf_counter() - start
        evaluations.append(ev)
    return evaluations


EVALUATOR = Evaluator(
    name=NAME, title="Calibration", settings=CalibSettings, run=run, result=CalibResult,
    summary=CalibResult.table, shared=SHARED, headline=(ECE, ADAPTIVE_ECE), headline_last=False,
    metrics=(ACCURACY, MEAN_CONFIDENCE, "n", ECE, ADAPTIVE_ECE, MCE, RMS_CE, CLASSWISE_ECE, f"{TS}/*"),
    figures="Reliability diagrams", uses_forward_cache=True, preflight=forward_preflight,
    cost=forward_cost,
    short_help="ECE, adaptive ECE, MCE, RMS and classwise calibration error, reliability diagram.",
    help="""ECE, adaptive ECE, MCE, RMS and classwise calibration error, reliability diagram.

    \b
    Examples:
      jembench calib bundled:jem-digits --dataset digits
      jembench calib jem.pt --dataset cifar10 --sigma 0.03 --bins 20   (the JEM++ protocol)

    Intervals: seeded percentile bootstrap. Temperature scaling is fitted on a seeded half of the
    evaluation set and reported (ECE/NLL before and after, on the other half) as a reference only:
    the headline numbers are never temperature-scaled. Writes OUT_DIR/results.json and
    OUT_DIR/figures/reliability-*.png (and OUT_DIR/raw/*.npz with --save-raw).
    """)

calib = EVALUATOR.function()
