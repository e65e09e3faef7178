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
from ..runtime import derive_seed, generator, randn
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


def _batched_ais(model: HybridModel, x0s: list[torch.Tensor], betas: list[torch.Tensor], s: DensitySettings,
                 seed: int, batch_size: int, progress: bool) -> list[AISResult]:
    """AIS of each group of chains (forward, reverse), all groups in the same batches of at most ``batch_size``
    chains; each group of each batch adapts its own step from ``s.step_size``."""
    import torch

    from ..sampling.ais import ais_paths
    from ..sampling.mcmc import input_box

    lo, hi = (b.to(model.device) for b in input_box(model.info))
    gen = generator(seed, model.device)
    calls = max(1, -(-sum(len(x) for x in x0s) // batch_size))
    pieces = [torch.tensor_split(x, calls) for x in x0s]
    runs: list[list[AISResult]] = [[] for _ in x0s]
    for c in range(calls):
        present = [g for g in range(len(x0s)) if len(pieces[g][c])]
        out = ais_paths(model, [pieces[g][c].to(model.device) for g in present], [betas[g] for g in present], gen,
                        step_size=s.step_size, box=(lo, hi), log_density=lambda x, y=None: model.log_px(x),
                        transitions=s.transitions, target_accept=s.target_accept, progress=progress)
        for g, res in zip(present, out):
            runs[g].append(res)
    return [_merge(parts) for parts in runs]


def _merge(parts: list[AISResult]) -> AISResult:
    import torch

    from ..sampling.ais import AISResult

    w = torch.tensor([len(p.log_w) for p in parts], dtype=torch.float32)
    return AISResult(torch.cat([p.log_w for p in parts]), torch.cat([p.x.cpu() for p in parts]),
                     torch.cat([p.acceptance for p in parts]),
                     (torch.stack([p.accept_by_step for p in parts]) * w[:, None]).sum(0) / w.sum(),
                     torch.cat([p.energy for p in parts], 1), parts[-1].step_size)


def _log_p_tilde(model: HybridModel, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    import torch

    with torch.no_grad():
        return torch.cat([model.log_px(x[i:i + batch_size].to(model.device)).float().cpu()
                          for i in range(0, len(x), batch_size)])


def _ais_metrics(model: HybridModel, x: torch.Tensor, s: DensitySettings, seed: int, batch_size: int,
                 ev: Evaluation, arrays: dict[str, torch.Tensor], progress: bool) -> None:
    """Forward and reverse AIS, log p(x) and bits/dim into ``ev`` (metrics, intervals, rows, protocol)."""
    import torch

    from ..metrics import density as dm
    from ..sampling.ais import AIS_RATE, SIGMOID_DELTA, log_box_volume, sigmoid_schedule
    from ..sampling.mcmc import input_box

    shape = tuple(x.shape[1:])
    box = input_box(model.info)
    log_z0 = log_box_volume(*box, shape)
    betas = sigmoid_schedule(s.distributions)
    start = time.perf_counter()
    x0 = box[0] + (box[1] - box[0]) * torch.rand((s.chains, *shape), generator=generator(derive_seed(seed, NAME,
                                                                                                       "base")))
    starts, paths = [x0], [betas]
    if s.reverse_chains:
        starts.append(x[:s.reverse_chains])
        paths.append(betas.flip(0))
    fwd, *rev_run = _batched_ais(model, starts, paths, s, derive_seed(seed, NAME, "ais"), batch_size, progress)
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
                       "reverse chains apart, per batch of --batch-size chains"
                       if s.target_accept is not None else "none"),
        "chains": s.chains, "reverse_chains": min(s.reverse_chains, len(x)),
        "reverse_start": "the first reverse_chains dequantised held-out images",
        "seeds": {k: derive_seed(seed, NAME, k) for k in ("base", "ais")},
        "batching": "forward and reverse chains share model passes, at most --batch-size chains per pass",
        "batch_size": batch_size,
        "log_bin_width": log_bin_width(model), "dims": d,
        "bits_per_dim": "-(log p(x) + d log(bin width)) / (d ln 2), bin = 1/256 of each channel's range"}


def _sm_metrics(model: HybridModel, x: torch.Tensor, s: DensitySettings, seed: int, batch_size: int,
                ev: Evaluation) -> None:
    """DSM at each sigma and SSM, mean over the held-out images, into ``ev``."""
    from ..metrics import density as dm

    score = dm.model_score(model.log_px)
    gen = generator(derive_seed(seed, NAME, "score-matching"), model.device)
    sums = {dsm_name(sg): 0.0 for sg in s.dsm_sigmas}
    if s.ssm_projections:
        sums[SSM] = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(model.device)
        for sg in s.dsm_sigmas:
            sums[dsm_name(sg)] += float(dm.dsm_loss(score, xb, randn(tuple(xb.shape), gen, xb), sg).sum())
        for _ in range(s.ssm_projections):
            sums[SSM] += float(dm.ssm_loss(score, xb, randn(tuple(xb.shape), gen, xb)).sum()) / s.ssm_projections
    ev.metrics.update({k: v / len(x) for k, v in sums.items()})
    ev.protocol["score_matching"] = {
        "score": "d log p~(x)/dx by autograd", "data": "the dequantised held-out images",
        "dsm": "1/2 ||s(x + sigma n) + n / sigma||^2, n ~ N(0, I), one draw per image (Vincent 2011)",
        "dsm_sigmas": list(s.dsm_sigmas), "ssm_projections": s.ssm_projections,
        "ssm": "v^T (ds/dx) v + 1/2 (v^T s(x))^2, v ~ N(0, I), Hessian-vector product by double backward "
               "(Song et al. 2019)", "seed": derive_seed(seed, NAME, "score-matching")}


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
