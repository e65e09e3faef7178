"""Chain diagnostics of a :class:`~jembench.sampling.trace.ChainTrace`: has the sampler mixed, is it still moving?

Window: the second half of the recorded steps (the first half is warm-up, Gelman et al., BDA3 ch. 11).
Over the window, of the energy E(x) = -log p~(x) of every chain:

- ``chain/rhat``: rank-normalised split-R-hat (Vehtari et al. 2021), ArviZ's ``az.rhat(method="rank")`` on
  chains x draws; > 1.1 warns (chains disagree: not mixed).
- ``chain/ess_bulk``: bulk effective sample size, ``az.ess(method="bulk")``: independent draws worth.
- ``chain/class_flip_fraction``: share of chains whose predicted class argmax_y f(x)[y] is not constant.
- ``chain/acceptance``: mean per-chain acceptance rate (MH / MALA only; min and max in the details).
- ``chain/energy_median_last``: median over chains of the last recorded energy.
- drift (``chain/drift_shift``): the window's halves are the trace's last two quarters. Per chain
  d_j = mean E over the last quarter - mean E over the third. Chains are independent, so a one-sample t-test of
  mean(d) = 0 across chains is valid whatever the autocorrelation within a chain. The energy is *still drifting*
  when p < ``DRIFT_P`` and |mean(d)| > ``DRIFT_EFFECT`` x the across-chain standard deviation of the chains'
  last-quarter mean energies (a shift that is both real and not negligible next to the spread between chains);
  that warns too. ``chain/drift_shift`` is mean(d) (negative: energy still falling).

ArviZ and SciPy are imported only when diagnostics run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .trace import ChainTrace

RHAT_LIMIT = 1.1
DRIFT_P = 0.01
DRIFT_EFFECT = 0.1
SUMMARY_POINTS = 100  # rows of the per-step quantile summary kept in results.json
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MIN_WINDOW = 4  # recorded steps the window needs for R-hat / ESS (and 2 chains)

log = logging.getLogger("jembench")


@dataclass
class Diagnostics:
    """``metrics`` (flat numbers, ``chain/...``), ``details`` (drift test, acceptance range, window),
    ``summary`` (energy quantiles across chains per recorded step, thinned), ``warnings``."""

    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def definition() -> dict[str, Any]:
    """What the diagnostics are, written next to them in results.json (the protocol of the numbers)."""
    import arviz

    return {"quantity": "energy E(x) = -logsumexp_y f(x)[y] of each chain, entering each recorded sampler step",
            "window": "second half of the recorded steps",
            "rhat": "rank-normalised split-R-hat, arviz.rhat(method='rank')", "ess": "arviz.ess(method='bulk')",
            "class_flip": "share of chains whose argmax_y f(x)[y] changes within the window",
            "drift": f"per-chain mean energy, last quarter minus third quarter; one-sample t-test across chains; "
                     f"drifting if p < {DRIFT_P} and |mean shift| > {DRIFT_EFFECT} x across-chain sd of the "
                     "last-quarter means",
            "rhat_limit": RHAT_LIMIT, "arviz": arviz.__version__}


def rhat(energy: np.ndarray) -> float:
    """ArviZ's rank-normalised split-R-hat of ``energy`` ``[draws, chains]``."""
    import arviz

    return float(arviz.rhat(np.ascontiguousarray(energy.T, dtype=np.float64), method="rank"))


def ess_bulk(energy: np.ndarray) -> float:
    """ArviZ's bulk effective sample size of ``energy`` ``[draws, chains]``."""
    import arviz

    return float(arviz.ess(np.ascontiguousarray(energy.T, dtype=np.float64), method="bulk"))


def drift_test(energy: np.ndarray) -> Optional[dict[str, Any]]:
    """The drift test of the module docstring on ``energy`` ``[steps, chains]`` (all recorded steps; it reads
    the last two quarters); None with fewer than 2 chains or 4 steps, or identical chains."""
    steps, chains = energy.shape
    if chains < 2 or steps < 4:
        return None
    from scipy import stats

    q = steps // 4
    third, last = energy[steps - 2 * q:steps - q].mean(0), energy[steps - q:].mean(0)
    d = last - third
    shift = float(d.mean())
    spread = float(last.std(ddof=1))
    if spread == 0 and d.std() == 0:  # identical chains: no independent evidence across chains
        return None
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if d.std() > 0 else (0.0 if shift else 1.0)
    relative = abs(shift) / spread if spread > 0 else (math.inf if shift else 0.0)
    return {"shift": shift, "p": p, "relative_shift": relative, "drifting": bool(p < DRIFT_P and
                                                                                  relative > DRIFT_EFFECT)}


def summary(trace: ChainTrace, points: int = SUMMARY_POINTS) -> dict[str, list[float]]:
    """Energy quantiles across chains at (at most ``points``) evenly spaced recorded steps, always the last."""
    n = trace.energy.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int)) if n else np.zeros(0, int)
    e = trace.energy.numpy()[rows]
    out: dict[str, list[float]] = {"step": trace.steps.numpy()[rows].tolist()}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(e, q, axis=1).tolist() if len(rows) else []
    return out


def diagnose(trace: ChainTrace, label: str = "") -> Diagnostics:
    """Every diagnostic of the module docstring; warnings are also logged on the ``jembench`` logger."""
    out = Diagnostics(summary=summary(trace))
    energy = trace.energy.double().numpy()
    steps, chains = energy.shape
    window = energy[steps // 2:]
    out.details["window_steps"] = [int(trace.steps[steps // 2]), int(trace.steps[-1])] if steps else []
    out.details["chains"], out.details["recorded_steps"] = chains, steps
    if steps:
        out.metrics["chain/energy_median_last"] = float(np.median(energy[-1]))
    if chains >= 2 and len(window) >= MIN_WINDOW and np.ptp(window) == 0:
        out.details["rhat"] = "undefined: the energy does not vary within the window"
    elif chains >= 2 and len(window) >= MIN_WINDOW:
        out.metrics["chain/rhat"] = rhat(window)
        out.metrics["chain/ess_bulk"] = ess_bulk(window)
    else:
        out.details["rhat"] = f"not computed: needs >= 2 chains and a window of >= {MIN_WINDOW} recorded steps"
    if trace.predicted is not None and steps:
        pred = trace.predicted[steps // 2:]
        out.metrics["chain/class_flip_fraction"] = float((pred != pred[:1]).any(0).double().mean())
    if trace.acceptance is not None:
        acc = trace.acceptance.double()
        out.metrics["chain/acceptance"] = float(acc.mean())
        out.details["acceptance_min_max"] = [float(acc.min()), float(acc.max())]
    drift = drift_test(energy)
    if drift is not None:
        out.details["drift"] = drift
        out.metrics["chain/drift_shift"] = drift["shift"]
    _warn(out, drift, label)
    return out


def _warn(out: Diagnostics, drift: Optional[dict[str, Any]], label: str) -> None:
    where = f"{label}: " if label else ""
    r = out.metrics.get("chain/rhat")
    if r is not None and r > RHAT_LIMIT:
        out.warnings.append(f"{where}energy R-hat {r:.3g} > {RHAT_LIMIT} over the second half of the chains: "
                            "they have not mixed (run longer chains, or read the samples as short-run)")
    if drift is not None and drift["drifting"]:
        out.warnings.append(f"{where}the energy is still drifting at the end of the chains (last-quarter minus "
                            f"third-quarter mean {drift['shift']:+.3g}, p = {drift['p']:.2g}): not stationary")
    for w in out.warnings:
        log.warning("%s", w)
