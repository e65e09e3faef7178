"""Calibration evaluator: ECE (equal-width and equal-mass bins), MCE, RMS calibration error and classwise ECE
with seeded bootstrap intervals, a reliability diagram, and temperature scaling as a reference (never applied
to the reported numbers), all read from the shared forward pass.

Temperature scaling (Guo et al. 2017): a seeded permutation splits the evaluation set; T is fitted on the first
``ts_fraction`` (minimum NLL, T in [1e-4, 1e4]) and ECE / NLL before and after are reported on the rest, under the
``temperature_scaling/`` metric names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from .. import defaults
from ..data.imageset import ImageSet
from ..errors import JembenchError
from ..forward import ForwardCache, ForwardPass
from ..metrics import (accuracy_wilson, bootstrap_calibration_errors, calibration_errors, ece, fit_temperature, nll,
                       reliability_bins)
from ..models import HybridModel
from ..results import Evaluation, atomic_savefig
from ..runtime import derive_seed, generator, resolve_device
from .clf import Checkpoints, ClfResult, base_protocol, forward_passes, refine_config, safe_name, write_raw_arrays
from .common import finish

BINNING = ("equal-width bins (lo, hi] on the max softmax probability, 0 in the first bin and 1.0 in the last; "
           "adaptive_ece: equal-mass bins; classwise_ece: per-class probability vs 1[y = k], averaged over classes; "
           "rms_ce = sqrt(sum_b n_b/N (acc_b - conf_b)^2) (torchmetrics norm='l2')")


class CalibResult(ClfResult):
    """Result of :func:`calib`; its comparison table shows the calibration errors."""

    def __init__(self, evaluations: list[Evaluation], document: dict[str, Any]):
        super().__init__(evaluations, document, ("accuracy", "ece", "adaptive_ece", "mce", "rms_ce", "classwise_ece",
                                                 "temperature_scaling/temperature"))


TEMPERATURE_BOUNDS = (1e-4, 1e4)


def temperature_reference(fp: ForwardPass, bins: int, fraction: float, seed: int) -> dict[str, float]:
    """Fit T on a seeded ``fraction`` of the pass, report ECE / NLL before and after on the rest."""
    n = fp.logits.shape[0]
    n_fit = int(round(n * fraction))
    perm = torch.randperm(n, generator=generator(derive_seed(seed, "temperature-split")))
    fit, held = perm[:n_fit], perm[n_fit:]
    t = fit_temperature(fp.logits[fit], fp.labels[fit], bounds=TEMPERATURE_BOUNDS)
    z, y = fp.logits[held], fp.labels[held]
    return {"temperature_scaling/temperature": t, "temperature_scaling/n_fit": n_fit,
            "temperature_scaling/n_eval": int(held.numel()),
            "temperature_scaling/ece_before": ece(z.softmax(-1), y, bins),
            "temperature_scaling/ece_after": ece((z / t).softmax(-1), y, bins),
            "temperature_scaling/nll_before": nll(z, y), "temperature_scaling/nll_after": nll(z / t, y)}


def calib_evaluation(fp: ForwardPass, model: HybridModel, imageset: ImageSet, *, seed: int, bins: int,
                     bootstrap: int, level: float, ts_fraction: float) -> Evaluation:
    """Calibration metrics of one forward pass as an :class:`Evaluation` (no figure; see :func:`calib`)."""
    probs, labels = fp.probs, fp.labels
    n = len(labels)
    acc = accuracy_wilson(probs, labels)[0]
    metrics: dict[str, float] = {"accuracy": acc, "mean_confidence": float(probs.max(-1).values.mean()), "n": n}
    intervals: dict[str, list[float]] = {}
    boot_seed = derive_seed(seed, "calib-bootstrap")
    metrics.update(calibration_errors(probs, labels, bins))
    if bootstrap:  # one set of resamples for all five
        cis = bootstrap_calibration_errors(probs, labels, bins, n_boot=bootstrap, level=level, seed=boot_seed)
        intervals.update({k: list(v) for k, v in cis.items()})
    warnings = []
    if n < 2 * bins * 10:
        warnings.append(f"only {n} samples for {bins} bins: binned calibration errors are biased upward with few "
                        "samples per bin; use more samples or fewer --bins")
    fit_n = int(round(n * ts_fraction))
    if 0 < fit_n < n:
        metrics.update(temperature_reference(fp, bins, ts_fraction, seed))
        t = metrics["temperature_scaling/temperature"]
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
    return Evaluation("calib", model.info.to_dict(), protocol, metrics=metrics, intervals=intervals, rows=rows,
                      warnings=warnings)


def write_reliability_figure(ev: Evaluation, fp: ForwardPass, bins: int, out_dir: str | Path, index: int,
                             model: HybridModel) -> str:
    """Write the reliability diagram (confidence histogram under it) as PNG; return its path relative to out_dir."""
    from ..figures import close
    from ..figures.calibration import reliability_diagram

    rel = f"figures/reliability-{index}-{safe_name(model)}.png"
    fig = reliability_diagram(reliability_bins(fp.probs, fp.labels, bins),
                              title=f"{model.info.name} on {ev.protocol['dataset']} ({ev.protocol['split']})",
                              ece_value=ev.metrics["ece"])
    atomic_savefig(fig, Path(out_dir) / rel)
    close(fig)
    return rel


def calib(checkpoints: Checkpoints, dataset: Optional[str] = None, *, split: str = defaults.CLF_SPLIT,
          sigma: float = defaults.TEST_SIGMA, seed: int = defaults.SEED, out_dir: Optional[str | Path] = None,
          cache: Optional[ForwardCache] = None, device: Any = defaults.DEVICE, batch_size: int = defaults.BATCH_SIZE,
          data_dir: Any = None, download: bool = False, n: Optional[int] = None, head: Optional[str] = None,
          bins: int = defaults.CALIB_BINS, bootstrap: int = defaults.CALIB_BOOTSTRAP,
          level: float = defaults.CLF_INTERVAL_LEVEL, ts_fraction: float = defaults.CALIB_TS_FIT_FRACTION,
          refine_steps: int = defaults.REFINE_STEPS, refine_step_size: float = defaults.REFINE_STEP_SIZE,
          refine_noise: float = defaults.REFINE_NOISE, save_raw: bool = False) -> CalibResult:
    """ECE (``bins`` equal-width bins), adaptive ECE, MCE, RMS-CE and classwise ECE with bootstrap intervals, a
    reliability diagram (with ``out_dir``) and a temperature-scaling reference for each checkpoint. Mirrors
    ``jembench calib``; writes ``out_dir/results.json`` when ``out_dir`` is given."""
    if bins < 1:
        raise JembenchError(f"--bins must be >= 1, got {bins}")
    if bootstrap < 0:
        raise JembenchError(f"--bootstrap must be >= 0, got {bootstrap}")
    if not 0 < ts_fraction < 1:
        raise JembenchError(f"the temperature-scaling fit fraction must be in (0, 1), got {ts_fraction}")
    refine = refine_config(refine_steps, refine_step_size, refine_noise)
    evaluations = []
    for i, (model, imageset, fp, start) in enumerate(forward_passes(
            checkpoints, dataset, split=split, sigma=sigma, seed=seed, refine=refine, cache=cache, device=device,
            batch_size=batch_size, data_dir=data_dir, download=download, n=n, head=head)):
        ev = calib_evaluation(fp, model, imageset, seed=seed, bins=bins, bootstrap=bootstrap, level=level,
                              ts_fraction=ts_fraction)
        if out_dir is not None:
            ev.artifacts["reliability"] = write_reliability_figure(ev, fp, bins, out_dir, i, model)
            if save_raw:
                ev.artifacts["raw"] = write_raw_arrays(out_dir, "calib", i, model, probs=fp.probs, labels=fp.labels)
        ev.wall_time_s = time.perf_counter() - start
        evaluations.append(ev)
    config = {"evaluator": "calib", "dataset": dataset, "split": split, "sigma": sigma, "n": n, "head": head,
              "batch_size": batch_size, "bins": bins, "bootstrap": bootstrap, "level": level,
              "ts_fraction": ts_fraction, "refine": refine.to_dict() if refine else None}
    doc = finish(out_dir, evaluations, device=resolve_device(device), seed=seed, config=config)
    return CalibResult(evaluations, doc)
