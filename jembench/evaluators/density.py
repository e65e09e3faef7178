"""Density evaluator: normalised likelihood by AIS with a bracket, bits per dimension, and score matching.

``ais/log_z``: forward AIS (Neal 2001) from the uniform density on the input box to p~ along the geometric path
f_beta = p~^beta, MALA transitions (:mod:`jembench.sampling.ais`), log Z_0 + log mean exp of the weights: low in
expectation. ``ais/log_z_upper``: reverse AIS (RAISE / BDMC) from held-out images back to the base: high in
expectation only if those images were exact model samples. ``ais/log_px`` = mean log p~(x) - log Z over the
uniformly dequantised held-out images (its interval uses the other side), ``ais/bits_per_dim`` from it with bins of
1/256 of each channel's range. ``sm/dsm/<sigma>`` and ``sm/ssm`` are score-matching losses of the model's score
on the same images (:mod:`jembench.metrics.density`): they need no Z and compare models only on the same data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..cost import Cost
from ..io import atomic_savez
from ..results import Evaluation, EvaluatorResult
from ..rng import RECIPE_TEXT
from ..runtime import derive_seed, generator
from ..settings import Settings, option
from .base import Context, Evaluator, SharedSettings
from .common import eval_set_size, load_eval_set, summary_table

if TYPE_CHECKING:  # torch-backed: imported where used, so the settings and the registry entry stay light
    import torch

    from ..data.imageset import ImageSet
    from ..models import HybridModel
    from ..sampling.ais import AISResult

NAME = "density"
SHARED = ("dataset", "seed", "device", "batch_size", "data_dir", "download", "head", "norm")
PARTS = ("ais", "sm")
LOG_Z, LOG_Z_UPPER, GAP, ESS = "ais/log_z", "ais/log_z_upper", "ais/log_z_gap", "ais/ess"
LOG_PX, LOG_PX_LOWER, BPD, BPD_UPPER = "ais/log_px", "ais/log_px_lower", "ais/bits_per_dim", "ais/bits_per_dim_upper"
ACCEPT, ACCEPT_REV, LOG_P_TILDE, SSM = "ais/acceptance", "ais/acceptance_upper", "log_p_tilde", "sm/ssm"
DEQUANTISATION = "x = to_model_space((k + u) / 256), u ~ U[0, 1) per pixel (one seeded draw per image)"
READING = ("log Z lies in [ais/log_z, ais/log_z_upper] only in expectation: forward AIS is low in expectation; the "
           "upper side is high in expectation only if the held-out images were exact model samples, so it is only "
           "as good as the data's closeness to the model's samples. The width is the evaluation's own error bar. "
           "Score-matching losses need no Z and compare models only on the same data.")


RNG = (f"{RECIPE_TEXT}; seed 'ais': forward chain i purpose 'forward', reverse chain j (held-out image j) purpose "
       "'reverse'; seed 'base': forward chain i's uniform start")


def dsm_name(sigma: float) -> str:
    return f"sm/dsm/{sigma:g}"


@dataclass(frozen=True)
class DensitySettings(Settings):
    """Settings of ``jembench density``."""

    parts: tuple[str, ...] = option(PARTS, "What to compute, comma list: ais (log Z bracket, log p(x), bits/dim), "
                                           "sm (denoising and sliced score matching).", choices=PARTS, noun="part")
    n: Optional[int] = option(None, "Held-out test images for log p(x), bits/dim and score matching (default: "
                                    "the whole test split).", min=1)
    chains: int = option(100, "Forward AIS chains from the uniform base.", min=1)
    distributions: int = option(1000, "Intermediate distributions K of the AIS path (sigmoid schedule).", min=1)
    transitions: int = option(1, "MALA steps per intermediate distribution.", min=1)
    step_size: float = option(1e-3, "Initial MALA step eps (x' = x + eps grad + sqrt(2 eps) noise).", above=0,
                              unit="model space")
    target_accept: Optional[float] = option(0.574, "Adapt the step between distributions toward this acceptance "
                                                   "(none: keep it fixed).", above=0, max=0.999)
    reverse_chains: int = option(100, "Held-out images that start reverse AIS chains (the upper side; 0: none).",
                                 min=0)
    dsm_sigmas: tuple[float, ...] = option((0.01, 0.1), "Noise levels of denoising score matching.", above=0,
                                           unit="model space")
    ssm_projections: int = option(1, "Random projections per image for sliced score matching (0: none).", min=0)

    def check(self, spell):
        if not self.parts:
            yield f"{spell.assign('parts', '')}: name at least one of {', '.join(PARTS)}"
        if "sm" in self.parts and not self.dsm_sigmas and not self.ssm_projections:
            yield (f"{spell.assign('parts', list(self.parts))} asks for score matching but "
                   f"{spell.option('dsm_sigmas')} is empty and {spell.option('ssm_projections')} is 0")


@dataclass
class DensityResult(EvaluatorResult):
    """Result of :func:`density`; its table shows the bracket and the score-matching losses."""

    def table(self) -> str:
        names = [LOG_Z, LOG_Z_UPPER, LOG_PX, BPD]
        names += sorted({m for e in self.evaluations for m in e.metrics if m.startswith("sm/")})
        return summary_table(self.evaluations, [m for m in names if any(m in e.metrics for e in self.evaluations)])


def dequantised(model: HybridModel, imageset: ImageSet, seed: int) -> torch.Tensor:
    """Held-out images with uniform dequantisation noise (:data:`DEQUANTISATION`), in model space."""
    import torch

    u = torch.rand(imageset.images.shape, generator=generator(derive_seed(seed, NAME, "dequantise")))
    return model.to_model_space((imageset.images.float() + u) / 256.0)


def log_bin_width(model: HybridModel) -> float:
    """Mean over dimensions of log(bin width): a bin is 1/256 of each channel's range in model space."""
    import torch

    return float(torch.tensor([math.log(1 / (256 * s)) for s in model.info.std]).mean())


def _run_ais(model: HybridModel, x: torch.Tensor, s: DensitySettings, seed: int, batch_size: int,
             progress: bool) -> list[AISResult]:
    """Forward chains ``[0, chains)`` from the uniform base and reverse chains ``[chains, chains + R)`` from the
    first R held-out images: one index space, run in batches of ``batch_size``, this rank's block of whole batches
    (:func:`jembench.distributed.shard`); each chain's start and noise keyed by its index (:data:`RNG`), each
    group's step adapted on the mean over all its chains (every rank's), results gathered in chain order."""
    import torch

    from .. import distributed
    from ..rng import KeyedNoise, StackedNoise
    from ..sampling.ais import ais_paths, group_means, sigmoid_schedule
    from ..sampling.mcmc import input_box

    c, r = s.chains, min(s.reverse_chains, len(x))
    lo, hi = distributed.shard(c + r, align=batch_size)
    box = input_box(model.info)
    base = _base(min(lo, c), min(hi, c), tuple(x.shape[1:]), box, seed)
    betas = sigmoid_schedule(s.distributions)
    x0s, paths = [base], [betas]
    if s.reverse_chains:
        x0s.append(x[max(lo, c) - c:max(hi, c) - c])
        paths.append(betas.flip(0))
    key = derive_seed(seed, NAME, "ais")
    groups = torch.repeat_interleave(torch.arange(len(x0s)), torch.tensor([c, r][:len(x0s)]))  # every rank's chains

    def draws(a: int, b: int) -> StackedNoise:  # this rank's chains [a, b) are chains [lo + a, lo + b)
        a, b = lo + a, lo + b
        return StackedNoise(([KeyedNoise(key, a, min(b, c), "forward")] if a < c else [])
                            + ([KeyedNoise(key, max(a, c) - c, b - c, "reverse")] if b > c else []))

    def rates(alpha: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
        return group_means(distributed.gather(alpha), groups, n_groups)  # this rank's alpha, then everyone's

    dev_box = tuple(b.to(model.device) for b in box)
    runs = ais_paths(model, [t.to(model.device) for t in x0s], paths, draws, step_size=s.step_size, box=dev_box,
                     log_density=lambda z, y=None: model.log_px(z), transitions=s.transitions,
                     target_accept=s.target_accept, progress=progress, batch_size=batch_size, rates=rates)
    return [_gathered(run) for run in runs]


def _base(start: int, stop: int, shape: tuple[int, ...], box: tuple[torch.Tensor, torch.Tensor],
          seed: int) -> torch.Tensor:
    """Forward chains ``[start, stop)``'s start states, uniform on the box, keyed by chain index."""
    from ..rng import SAMPLE_CHUNK, keyed

    u = keyed(start, stop, shape, derive_seed(seed, NAME, "base"), kind="rand", chunk=SAMPLE_CHUNK)
    return box[0] + (box[1] - box[0]) * u


def _gathered(run: AISResult) -> AISResult:
    """Every rank's chains of one group, in chain order (the step and acceptance by step are already common)."""
    from .. import distributed
    from ..sampling.ais import AISResult

    g = distributed.gather
    return AISResult(g(run.log_w), g(run.x.cpu()), g(run.acceptance), run.accept_by_step, g(run.energy, dim=1),
                     run.step_size)


def _log_p_tilde(model: HybridModel, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """log p~ of every image; this rank's whole batches, gathered."""
    import torch

    from .. import distributed

    with torch.no_grad():
        return distributed.map_batches(x, batch_size, lambda b: model.log_px(b.to(model.device)).float().cpu(),
                                       torch.zeros(0))


def _ais_metrics(model: HybridModel, x: torch.Tensor, s: DensitySettings, seed: int, batch_size: int,
                 ev: Evaluation, arrays: dict[str, torch.Tensor], progress: bool) -> None:
    """Forward and reverse AIS, log p(x) and bits/dim into ``ev`` (metrics, intervals, rows, protocol)."""
    from ..metrics import density as dm
    from ..sampling.ais import AIS_RATE, SIGMOID_DELTA, log_box_volume
    from ..sampling.mcmc import input_box

    shape = tuple(x.shape[1:])
    log_z0 = log_box_volume(*input_box(model.info), shape)
    start = time.perf_counter()
    fwd, *rev_run = _run_ais(model, x, s, seed, batch_size, progress)
    lz, d = dm.log_z_forward(fwd.log_w, log_z0), x[0].numel()
    mean_lp = ev.metrics[LOG_P_TILDE]
    m = {LOG_Z: lz, ESS: dm.effective_sample_size(fwd.log_w), ACCEPT: float(fwd.acceptance.mean()),
         LOG_PX: mean_lp - lz}
    m[BPD] = dm.bits_per_dim(m[LOG_PX], d, log_bin_width(model))
    arrays.update(forward_log_w=fwd.log_w, forward_energy=fwd.energy, forward_accept_by_step=fwd.accept_by_step)
    row = {"quantity": "log Z", "lower": lz}
    if s.reverse_chains:
        (rev,) = rev_run
        lzu = dm.log_z_reverse(rev.log_w, log_z0)
        m.update({LOG_Z_UPPER: lzu, GAP: lzu - lz, ACCEPT_REV: float(rev.acceptance.mean()),
                  LOG_PX_LOWER: mean_lp - lzu})
        m[BPD_UPPER] = dm.bits_per_dim(m[LOG_PX_LOWER], d, log_bin_width(model))
        ev.intervals.update({LOG_Z: [lz, lzu], LOG_PX: [m[LOG_PX_LOWER], m[LOG_PX]], BPD: [m[BPD], m[BPD_UPPER]]})
        row.update(upper=lzu, width=lzu - lz)
        ev.rows += [row, {"quantity": "mean log p(x)", "lower": m[LOG_PX_LOWER], "upper": m[LOG_PX],
                          "width": lzu - lz},
                    {"quantity": "bits/dim", "lower": m[BPD], "upper": m[BPD_UPPER],
                     "width": m[BPD_UPPER] - m[BPD]}]
        arrays.update(reverse_log_w=rev.log_w, reverse_energy=rev.energy, reverse_accept_by_step=rev.accept_by_step)
        if lzu < lz:
            ev.warnings.append(f"the bracket is inverted (log_z_upper {lzu:.4g} < log_z {lz:.4g}): too few "
                               "distributions or chains, or held-out data far from the model's samples")
    else:
        ev.rows.append(row)
    if m[ESS] < 0.1 * s.chains:
        ev.warnings.append(f"forward AIS effective sample size {m[ESS]:.1f} of {s.chains} chains: log Z is dominated "
                           "by a few chains; raise --distributions")
    ev.metrics.update(m)
    ev.provenance["time"]["ais_s"] = time.perf_counter() - start
    chain_steps = (s.chains + min(s.reverse_chains, len(x))) * s.distributions * s.transitions
    ev.provenance["time"]["ais_chain_steps_per_s"] = chain_steps / max(time.perf_counter() - start, 1e-9)
    ev.protocol["ais"] = {
        "base": "uniform on the input box (per channel: pixel 0 to pixel 1 in model space)", "log_z0": log_z0,
        "path": "geometric: f_beta(x) = p~(x)^beta on the box", "schedule": f"sigmoid, delta {SIGMOID_DELTA}",
        "distributions": s.distributions, "transitions": "MALA", "steps_per_distribution": s.transitions,
        "temperature": 1.0, "step_size": s.step_size, "target_accept": s.target_accept,
        "adaptation": (f"log step += {AIS_RATE} (mean acceptance - target) after each distribution, forward and "
                       "reverse chains apart, the mean over all chains of the group (every batch and rank)"
                       if s.target_accept is not None else "none"),
        "chains": s.chains, "reverse_chains": min(s.reverse_chains, len(x)),
        "reverse_start": "the first reverse_chains dequantised held-out images",
        "seeds": {k: derive_seed(seed, NAME, k) for k in ("base", "ais")}, "rng": RNG,
        "batching": "forward then reverse chains, one index space, in batches of --batch-size chains advanced in "
                    "lockstep (sharded: whole batches per rank)",
        "batch_size": batch_size,
        "log_bin_width": log_bin_width(model), "dims": d,
        "bits_per_dim": "-(log p(x) + d log(bin width)) / (d ln 2), bin = 1/256 of each channel's range"}


def _sm_metrics(model: HybridModel, x: torch.Tensor, s: DensitySettings, seed: int, batch_size: int,
                ev: Evaluation) -> None:
    """DSM at each sigma and SSM, mean over the held-out images, into ``ev``."""
    import torch

    from .. import distributed
    from ..metrics import density as dm
    from ..rng import SAMPLE_CHUNK, keyed

    score = dm.model_score(model.log_px)
    key = derive_seed(seed, NAME, "score-matching")
    values = {dsm_name(sg): [] for sg in s.dsm_sigmas} | ({SSM: []} if s.ssm_projections else {})
    lo, hi = distributed.shard(len(x), align=batch_size)  # this rank's whole batches; noise keyed per image
    for i in range(lo, hi, batch_size):
        xb = x[i:min(i + batch_size, hi)].to(model.device)
        noise = lambda *purpose: keyed(i, i + len(xb), tuple(xb.shape[1:]), key, *purpose,  # noqa: E731
                                       chunk=SAMPLE_CHUNK).to(xb)
        for sg in s.dsm_sigmas:
            values[dsm_name(sg)].append(dm.dsm_loss(score, xb, noise("dsm", f"{sg:g}"), sg).cpu())
        if s.ssm_projections:
            values[SSM].append(sum(dm.ssm_loss(score, xb, noise("ssm", p)).cpu()
                                   for p in range(s.ssm_projections)) / s.ssm_projections)
    ev.metrics.update({k: float(distributed.gather(torch.cat(v) if v else torch.zeros(0)).double().mean())
                       for k, v in values.items()})
    ev.protocol["score_matching"] = {
        "score": "d log p~(x)/dx by autograd", "data": "the dequantised held-out images",
        "dsm": "1/2 ||s(x + sigma n) + n / sigma||^2, n ~ N(0, I), one draw per image (Vincent 2011)",
        "rng": f"{RECIPE_TEXT}; purposes ('dsm', sigma) and ('ssm', projection)",
        "dsm_sigmas": list(s.dsm_sigmas), "ssm_projections": s.ssm_projections,
        "ssm": "v^T (ds/dx) v + 1/2 (v^T s(x))^2, v ~ N(0, I), Hessian-vector product by double backward "
               "(Song et al. 2019)", "seed": key}


def cost(s: DensitySettings, shared: SharedSettings, model: HybridModel) -> list[Cost]:
    """log p~ of the held-out images: one forward each. AIS: every chain (forward ones and one per reverse start)
    evaluates log p~ and its gradient at its start and at each MALA proposal, 1 + distributions x transitions
    forward and backward passes. DSM: one score (forward + backward) per image and sigma; SSM: per image and
    projection, the score with its graph and the Hessian-vector product's second backward."""
    name, n = eval_set_size(model, shared.dataset, "test", s.n)
    out = [Cost(f"log p~ {name}", n, n)]
    if "ais" in s.parts:
        chains = s.chains + min(s.reverse_chains, n)
        passes = chains * (1 + s.distributions * s.transitions)
        out.append(Cost(f"AIS: {chains} chains x {s.distributions} distributions", n, passes, passes,
                        sampler_steps=chains * s.distributions * s.transitions))
    if "sm" in s.parts:
        dsm = n * len(s.dsm_sigmas)
        out.append(Cost("score matching", n, dsm + n * s.ssm_projections, dsm + 2 * n * s.ssm_projections))
    return out


def run(models: list[HybridModel], s: DensitySettings, shared: SharedSettings, ctx: Context) -> list[Evaluation]:
    """For each model: mean log p~ of the dequantised held-out images, then the AIS bracket and score matching."""
    sets = [load_eval_set(m, shared.dataset, "test", data_dir=shared.data_dir, download=shared.download, n=s.n,
                          need_labels=False) for m in models]
    evaluations = []
    for model, imageset in zip(models, sets):
        precision, model.precision = model.precision, "fp32"  # MH ratios and log weights need float32
        try:
            evaluations.append(_evaluate(model, imageset, s, shared, ctx))
        finally:
            model.precision = precision
    return evaluations


def _evaluate(model: HybridModel, imageset: ImageSet, s: DensitySettings, shared: SharedSettings,
              ctx: Context) -> Evaluation:
    """One model's log p~, AIS bracket and score matching, every pass in float32."""
    start = time.perf_counter()
    x = dequantised(model, imageset, shared.seed)
    warnings = [f"--reverse-chains {s.reverse_chains} but {len(x)} held-out images: {len(x)} reverse chains "
                "ran"] if "ais" in s.parts and s.reverse_chains > len(x) else []
    protocol = {"dataset": imageset.name, "split": imageset.split, "n": len(x), "dataset_meta": imageset.meta,
                "fingerprint": imageset.fingerprint(), "dequantisation": DEQUANTISATION, "seed": shared.seed,
                "parts": list(s.parts), "reading": READING, "precision": "fp32 (always: MH ratios and AIS "
                                                                        "log weights need it)"}
    ev = Evaluation(NAME, model.info.to_dict(), protocol, warnings=warnings, provenance={"time": {}})
    ev.metrics[LOG_P_TILDE] = float(_log_p_tilde(model, x, shared.batch_size).mean())
    if "ais" in s.parts:
        arrays: dict[str, torch.Tensor] = {}
        _ais_metrics(model, x, s, shared.seed, shared.batch_size, ev, arrays, ctx.progress)
        if ctx.save_raw and ctx.out_dir is not None:
            rel = f"raw/{NAME}-{ctx.slug(model)}.npz"
            atomic_savez(ctx.out_dir / rel, **{k: v.numpy() for k, v in arrays.items()})
            ev.artifacts["AIS weights and energy traces"] = rel
    if "sm" in s.parts:
        t = time.perf_counter()
        _sm_metrics(model, x, s, shared.seed, shared.batch_size, ev)
        ev.provenance["time"]["sm_s"] = time.perf_counter() - t
    ev.wall_time_s = time.perf_counter() - start
    return ev


EVALUATOR = Evaluator(
    name=NAME, title="Density", settings=DensitySettings, run=run, result=DensityResult,
    summary=DensityResult.table, shared=SHARED, cost=cost, headline=(LOG_PX, BPD), headline_last=False,
    metrics=(LOG_P_TILDE, "ais/*", "sm/dsm/*", SSM), figures="Density files",
    short_help="Normalised log-likelihood by AIS (a bracket on log Z), bits/dim, score-matching losses.",
    help="""Normalised density: an AIS bracket on log Z, log p(x) and bits/dim, score-matching losses.

    ais/log_z: forward AIS from the uniform density on the input box to p~ (geometric path, MALA
    transitions, --chains chains, --distributions intermediate distributions): low in expectation.
    ais/log_z_upper: reverse AIS from --reverse-chains held-out images (RAISE): high in expectation only if
    the images were exact model samples, so only as good as the data's closeness to the model's samples.
    The width of [log_z, log_z_upper] is the evaluation's own error bar. ais/log_px = mean log p~(x) - log Z
    on uniformly dequantised test images (interval: the other side), ais/bits_per_dim from it with bins of
    1/256 of the range (2/256 in [-1, 1]). sm/dsm/SIGMA and sm/ssm: denoising and sliced score matching of the
    model's score on the same images (lower is better; comparable only on the same data).

    \b
    Examples:
      jembench density checkpoints/jem-digits.pt --distributions 200 --chains 32
      jembench density jem.pt --dataset cifar10 --n 1000 --distributions 10000 --parts ais
    """)

density = EVALUATOR.function()
