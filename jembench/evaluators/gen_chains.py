"""The gen evaluator's chain side: diagnostics of each protocol's chains and the long-run ladder.

Diagnostics (:mod:`jembench.sampling.diagnostics`): the numbers go to ``metrics`` (``chain/rhat``, ...), their
definition to ``protocol["chain_diagnostics"]``, the drift test and the energy quantiles per recorded step to
``provenance["chain_diagnostics"]``, the energy-trace figure beside the sample grid.

Long-run ladder (Nijkamp et al. 2019, 2020: short-run samples can look good and still collapse or saturate when
the same chains run longer): with ``ladder = (1, 10, 100)`` each fresh protocol also runs at 10 K and 100 K
steps (K its own steps; JEM++: outer steps M), from the same seed, and IS, FID and the mean energy of the final
samples are written per chain length as ``ladder/<steps>/<metric>`` (multiple 1 reuses the main samples).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import background
from ..generation import GenProtocol, Samples, generate
from ..io import atomic_savez
from ..results import Evaluation

if TYPE_CHECKING:  # torch-backed: imported where used, so listing commands stays light
    import torch

    from ..models import HybridModel
    from ..sampling.diagnostics import Diagnostics

LADDER_METRICS = ("is", "fid")  # of the metrics asked for, those the ladder repeats at every chain length
NO_CHAINS = "none: no chains run (samples read from the checkpoint's replay buffer)"


def chain_diagnostics(samples: Samples, label: str) -> tuple[Optional[Diagnostics], Any]:
    """``(diagnostics, protocol entry)``: None and a reason for buffer protocols or chains with no step."""
    from ..sampling.diagnostics import definition, diagnose

    trace = samples.trace
    if trace is None:
        return None, NO_CHAINS
    if not trace.energy.shape[0]:
        return None, "none: the chains made no sampler step"
    return diagnose(trace, label), {**definition(), "axis": trace.axis}


def record(ev: Evaluation, diag: Optional[Diagnostics], entry: Any) -> None:
    """Write the diagnostics into an evaluation (metrics, protocol, provenance, warnings)."""
    ev.protocol["chain_diagnostics"] = entry
    if diag is None:
        return
    ev.metrics.update(diag.metrics)
    ev.warnings += diag.warnings
    ev.provenance["chain_diagnostics"] = {**diag.details, "energy_quantiles": diag.summary}


def write_trace(out_dir: Optional[str | Path], stem: str, ev: Evaluation, samples: Samples,
                save_raw: bool) -> dict[str, str]:
    """The energy-trace figure (``samples/<stem>-chains.png``) and, with ``save_raw``, the trace (npz)."""
    prov = ev.provenance.get("chain_diagnostics")
    if out_dir is None or prov is None or samples.trace is None:
        return {}
    arts = {}
    title = f"{ev.checkpoint.get('name')} / {ev.protocol['sampling'].get('name')}: energy of the chains"
    rel = f"samples/{stem}-chains.png"
    background.render(f"chain energy figure {rel}", _draw_trace, prov, dict(ev.metrics), samples.trace.axis, title,
                      Path(out_dir) / rel)
    arts["samples: chain energy"] = rel
    if save_raw:
        rel = f"raw/{stem}-chains.npz"
        atomic_savez(Path(out_dir) / rel, **samples.trace.arrays())
        arts["raw chain trace"] = rel
    return arts


def _draw_trace(prov: dict[str, Any], metrics: dict[str, float], axis: str, title: str,
                path: Path) -> dict[Path, bytes]:
    """The energy-trace figure as the PNG file ``path`` (a figure-worker job, :mod:`jembench.background`)."""
    from ..figures import png_file
    from ..figures.chains import energy_trace

    return png_file(energy_trace(prov["energy_quantiles"], metrics, prov, axis=axis, title=title,
                                 window=prov.get("window_steps")), path)


def run_ladder(ev: Evaluation, model: HybridModel, proto: GenProtocol, samples: Samples, multiples: tuple,
               keys: tuple[str, ...], score: Callable[[Samples], dict[str, float]], **kw: Any) -> None:
    """The long-run ladder of one fresh protocol into ``ev`` (metrics, ``protocol["ladder"]``, warnings) for the
    metric families ``keys`` ("is", "fid"); ``kw`` go to :func:`ladder`."""
    pick = lambda d: {k: v for k, v in d.items() if k.split("/")[0] in keys}  # noqa: E731
    main = {**pick(ev.metrics), **{k: v for k, v in ev.metrics.items() if k == "chain/rhat"}}
    metrics, ev.protocol["ladder"], warnings = ladder(model, proto, samples, main, multiples,
                                                      lambda smp: pick(score(smp)), **kw)
    ev.metrics.update(metrics)
    ev.warnings += warnings


def mean_energy(model: HybridModel, x: torch.Tensor, batch_size: int) -> float:
    """Mean E(x) = -log p~(x) of the samples as sampled (model space), eval mode; this rank's whole batches."""
    import torch

    from .. import distributed

    with torch.no_grad():
        energy = distributed.map_batches(x, batch_size, lambda b: -model.log_px(b.to(model.device)).double().cpu(),
                                         torch.zeros(0, dtype=torch.float64))
    return float(energy.mean())


def ladder(model: HybridModel, proto: GenProtocol, main: Samples, main_scores: dict[str, float], multiples: tuple,
           score: Callable[[Samples], dict[str, float]], *, n: Optional[int], seed: int, batch_size: int,
           train_set: Any, progress: bool) -> tuple[dict[str, float], dict[str, Any], list[str]]:
    """``(metrics, protocol entry, warnings of the longer runs)`` of the long-run ladder for one fresh protocol
    (see the module docstring)."""
    from ..sampling.sgld import JEMPPConfig

    k = proto.sampler.outer_steps if isinstance(proto.sampler, JEMPPConfig) else proto.sampler.steps
    field = "outer_steps" if isinstance(proto.sampler, JEMPPConfig) else "steps"
    metrics: dict[str, float] = {}
    warnings: list[str] = []
    for m in sorted(set(multiples)):
        steps = m * k
        if m == 1:  # the main run: its scores and R-hat (``main_scores`` holds chain/rhat), its warnings already given
            samples, scores = main, {k: v for k, v in main_scores.items() if k != "chain/rhat"}
            rhat = main_scores.get("chain/rhat")
        else:
            longer = dataclasses.replace(proto, sampler=dataclasses.replace(proto.sampler, **{field: steps}))
            samples = generate(model, longer, n, seed=seed, batch_size=batch_size, train_set=train_set,
                               progress=progress)
            scores = score(samples)
            diag, _ = chain_diagnostics(samples, f"{model.info.name} / {proto.name} at {steps} steps")
            rhat = diag.metrics.get("chain/rhat") if diag is not None else None
            warnings += diag.warnings if diag is not None else []
        metrics.update({f"ladder/{steps}/{key}": v for key, v in scores.items()})
        metrics[f"ladder/{steps}/energy_mean"] = mean_energy(model, samples.x, batch_size)
        if rhat is not None:
            metrics[f"ladder/{steps}/rhat"] = rhat
    entry = {"multiples": sorted(set(multiples)), "steps": [m * k for m in sorted(set(multiples))],
             "same_seed": True, "energy": "mean E(x) of the final samples in model space, eval mode",
             "metrics": "ladder/<steps>/<metric>: IS and FID as the main metrics, energy_mean, rhat"}
    return metrics, entry, warnings
