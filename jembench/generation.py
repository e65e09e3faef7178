"""Sampling protocols for generation metrics, built on :mod:`jembench.sampling` (no SGLD loop of its own).

A :class:`GenProtocol` says where samples come from, in full, so it can be written next to the numbers:

- ``source="fresh"``: chains from ``init`` ("uniform": U(lo, hi) in model space, as JEM; "gaussian": the
  per-class Gaussians of the training split, :meth:`GaussianInit.fit`, as JEM++), run with the JEM SGLD
  (:class:`SGLDConfig`) or the JEM++ sampler (:class:`JEMPPConfig`).
  With ``pcd_rounds = 0`` each of the N chains runs once, its init and noise keyed by its index
  (:class:`jembench.rng.KeyedNoise`, purpose ``"chain"``, recipe ``per-sample v2``), so a sample does not depend on
  the batch size (except through batch statistics with ``bn_train``). With ``pcd_rounds = R`` (JEM's
  ``uncond_samples``): a buffer of N chains from ``init``; R times, ``pcd_batch`` chains are drawn with replacement (a
  ``reinit_freq`` fraction restarted from ``init``), advanced by the sampler and written back; the samples
  are the whole buffer (the buffer's init, draws, restarts and fresh inits come from one generator seeded
  ``derived_seed``: rounds pick chains at random; round r's advance noise is keyed by the draw's row).
  Sharded over torchrun ranks as :mod:`jembench.chain_runs` says: fresh chains in whole batches, PCD rounds in
  whole batches of their draws unless the draws are coupled; the numbers equal one process.
- ``conditional=True``: SGLD on log p~(x, y) = f(x)[y], N/K chains per class y (balanced labels).
- ``source="buffer"``: the checkpoint's own replay buffer, all of it or (``buffer_top = q``) per class
  predicted by the model the fraction q most confident (JEM++ / SADA-JEM report IS / FID this way).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from .errors import JembenchError
from .runtime import derive_seed, generator
from .settings import hint

if TYPE_CHECKING:  # torch and the samplers are imported when sampling: the protocols' names and fields stay light
    import torch

    from .sampling import GaussianInit, JEMPPConfig, SGLDConfig, UniformInit
    from .chain_runs import MCMCRuns
    from .sampling.mcmc import MCMCConfig
    from .sampling.trace import ChainTrace

SGLD_STEPS = 40  # JEM README: 40 SGLD steps per draw for fresh samples
PCD_ROUNDS = 100  # batches drawn from, advanced and written back to the buffer (JEM uncond_samples)
PCD_BATCH = 64
REINIT_FREQ = 0.05  # JEM: 5% of each draw restarts from the init
BUFFER_TOP = 0.1  # SADA-JEM: IS on the 10% most confident buffer samples per class (FID on 90%)
SOURCES = ("fresh", "buffer")
PCD_FIELDS = ("pcd_rounds", "pcd_batch", "reinit_freq")
INITS = ("uniform", "gaussian")


@dataclass
class GenProtocol:
    """How samples are drawn (see the module docstring)."""

    name: str = "sgld"
    source: str = "fresh"
    init: str = "uniform"
    sampler: SGLDConfig | JEMPPConfig | MCMCConfig = field(default_factory=lambda: _sampler("sgld"))
    pcd_rounds: int = 0
    pcd_batch: int = PCD_BATCH
    reinit_freq: float = REINIT_FREQ
    conditional: bool = False
    buffer_top: Optional[float] = None
    bn_train: Optional[bool] = None  # None: train-mode BN for the JEM++ sampler on BN models (as JEM++), else eval

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise JembenchError(f"unknown sample source {self.source!r}; choose {' or '.join(SOURCES)}")
        if self.init not in INITS:
            raise JembenchError(f"unknown chain init {self.init!r}; choose {' or '.join(INITS)}")
        if self.buffer_top is not None and not 0 < self.buffer_top <= 1:
            raise JembenchError(f"--buffer-top {self.buffer_top}: a fraction in (0, 1]")
        if self.pcd_rounds < 0 or self.pcd_batch < 1:
            raise JembenchError("--pcd-rounds must be >= 0 and --pcd-batch >= 1")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "source": self.source}
        if self.source == "buffer":
            d.update(selection=f"top {self.buffer_top:g} per predicted class by max softmax" if self.buffer_top
                     else "all", buffer_top=self.buffer_top)
            return d
        d.update(init=self.init, sampler=self.sampler.to_dict(), conditional=self.conditional,
                 target="log p~(x, y) = f(x)[y]" if self.conditional else "log p~(x) = logsumexp_y f(x)[y]",
                 pcd_rounds=self.pcd_rounds, bn_train=self.bn_train)
        if self.pcd_rounds:
            d.update(pcd_batch=self.pcd_batch, reinit_freq=self.reinit_freq)
        return d


PRESETS: dict[str, dict[str, Any]] = {
    "sgld": {"doc": "fresh chains from U(-1,1), JEM SGLD (step 1, noise 0.01), run once"},
    "pcd": {"doc": "JEM uncond_samples: PCD rounds into a buffer of N chains from U(-1,1)",
            "pcd_rounds": PCD_ROUNDS},
    "jem++": {"doc": "fresh chains from the per-class Gaussians, the JEM++ sampler (M=10, 5 inner steps of 0.2)",
              "init": "gaussian", "sampler": lambda: _sampler("jem++")},
    "conditional": {"doc": "class-conditional SGLD on f(x)[y] from U(-1,1), N/K chains per class",
                    "conditional": True},
    "mh": {"doc": "fresh chains from U(-1,1), random-walk Metropolis-Hastings on p~^(1/T) in the input box "
                  "(100 steps of std 0.01 after 50 warm-up steps adapting it to 0.234 acceptance)",
           "sampler": lambda: _sampler("mh")},
    "mala": {"doc": "fresh chains from U(-1,1), MALA on p~^(1/T) in the input box (100 steps after 50 warm-up "
                    "steps adapting the step to 0.574 acceptance)", "sampler": lambda: _sampler("mala")},
    "buffer": {"doc": "the checkpoint's replay buffer, all of it", "source": "buffer"},
    "buffer-top": {"doc": "the checkpoint's replay buffer, the most confident fraction per class",
                   "source": "buffer", "buffer_top": BUFFER_TOP},
}


def _sampler(kind: str) -> SGLDConfig | JEMPPConfig | MCMCConfig:
    """A protocol's default sampler: JEM's SGLD (``SGLD_STEPS`` steps), the JEM++ sampler, or MH / MALA with 50
    warm-up steps."""
    from .sampling import JEMPPConfig, SGLDConfig
    from .sampling.mcmc import MALAConfig, MHConfig

    makers = {"jem++": JEMPPConfig, "mh": lambda: MHConfig(warmup=50), "mala": lambda: MALAConfig(warmup=50)}
    return makers[kind]() if kind in makers else SGLDConfig(steps=SGLD_STEPS)


def make_protocol(spec: str | GenProtocol | dict[str, Any], *, steps: Optional[int] = None,
                  step_size: Optional[float] = None, noise: Optional[float] = None,
                  temperature: Optional[float] = None, warmup: Optional[int] = None,
                  target_accept: Optional[float] = None, **overrides: Any) -> GenProtocol:
    """A preset name (``PRESETS``), a dict of :class:`GenProtocol` fields or a protocol, with overrides applied.

    ``steps`` / ``step_size`` / ``noise`` set the sampler's (for JEM++: its outer steps M; ``noise`` only SGLD and
    JEM++, whose noise is free); ``temperature`` / ``warmup`` / ``target_accept`` set MH and MALA's; other overrides
    (``init``, ``pcd_rounds``, ``pcd_batch``, ``reinit_freq``, ``conditional``, ``buffer_top``, ``bn_train``)
    set protocol fields. ``None`` leaves a field as it is. ``buffer_top`` changes only buffer protocols and the
    PCD fields only protocols that run PCD rounds (``make_protocol("pcd", conditional=True)`` is conditional PCD).
    """
    from .sampling import JEMPPConfig

    if isinstance(spec, GenProtocol):
        proto = dataclasses.replace(spec, sampler=dataclasses.replace(spec.sampler))
    elif isinstance(spec, dict):
        proto = GenProtocol(**spec)
    elif spec in PRESETS:
        fields = {k: (v() if callable(v) else v) for k, v in PRESETS[spec].items() if k != "doc"}
        proto = GenProtocol(name=spec, **fields)
    else:
        raise JembenchError(f"unknown generation protocol {spec!r}; presets: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(GenProtocol)} - {"name", "sampler", "source"}
    bad = set(overrides) - names
    if bad:
        raise TypeError(f"unknown protocol override(s) {sorted(bad)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if proto.source != "buffer":
        changes.pop("buffer_top", None)  # only meaningful for buffer protocols
    if not proto.pcd_rounds:  # PCD settings change PCD protocols only: "sgld" stays one pass per chain
        for key in PCD_FIELDS:
            changes.pop(key, None)
    proto = dataclasses.replace(proto, **changes)
    sampler_changes = {"step_size": step_size, "noise": noise, "temperature": temperature, "warmup": warmup,
                       "target_accept": target_accept,
                       ("outer_steps" if isinstance(proto.sampler, JEMPPConfig) else "steps"): steps}
    has = {f.name for f in dataclasses.fields(proto.sampler)}
    proto.sampler = dataclasses.replace(proto.sampler, **{k: v for k, v in sampler_changes.items()
                                                          if v is not None and k in has})
    return proto


@dataclass
class Samples:
    """Generated samples: ``x`` model space (CPU float), ``images`` quantised uint8, ``labels`` (conditional
    targets) or None, the resolved ``protocol`` record (the same for every checkpoint), ``observed`` facts of
    this checkpoint's run, ``warnings``, timing and the number of chain steps."""

    x: torch.Tensor
    images: torch.Tensor
    labels: Optional[torch.Tensor]
    protocol: dict[str, Any]
    observed: dict[str, float] = field(default_factory=dict)  # checkpoint-specific facts (buffer size, ...)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chain_steps: int = 0  # sum over sampler calls of chains x gradient steps
    acceptance: Optional[torch.Tensor] = None  # MH / MALA fresh chains: per-chain acceptance rate [n]
    energy: Optional[torch.Tensor] = None  # MH / MALA fresh chains: E(x) of every chain after each step [steps, n]
    trace: Optional[ChainTrace] = None  # chain energies for the diagnostics (None: no chains were run)


def gradient_steps(cfg: SGLDConfig | JEMPPConfig | MCMCConfig) -> int:
    """Steps per chain, each one model evaluation (JEM++: one per outer step; MH / MALA: warm-up + steps)."""
    from .sampling import JEMPPConfig
    from .sampling.mcmc import MCMCConfig

    if isinstance(cfg, MCMCConfig):
        return cfg.warmup + cfg.steps
    return cfg.outer_steps if isinstance(cfg, JEMPPConfig) else cfg.steps


def _mcmc_facts(runs: MCMCRuns, observed: dict[str, float], warnings: list[str]) -> None:
    """Acceptance and kept step size of MH / MALA runs into ``observed``; a warning when acceptance is extreme."""
    acc = runs.acceptance
    observed.update({"mcmc/acceptance_mean": float(acc.mean()), "mcmc/acceptance_min": float(acc.min()),
                     "mcmc/acceptance_max": float(acc.max()), "mcmc/step_size_min": float(runs.step_sizes.min()),
                     "mcmc/step_size_max": float(runs.step_sizes.max())})
    if not 0.05 <= float(acc.mean()) <= 0.95:
        warnings.append(f"MH/MALA acceptance {float(acc.mean()):.3f}: the step is far from useful (near 0: too "
                        "large, near 1: too small); set --step-size or --warmup")


def _init(model: Any, proto: GenProtocol, train_set: Any) -> UniformInit | GaussianInit:
    from .sampling import GaussianInit, UniformInit

    lo, hi = model.info.value_range
    shape = (model.info.in_channels, *model.info.image_size)
    if proto.init == "uniform":
        return UniformInit(shape, lo, hi)
    if train_set is None or train_set.labels is None:
        raise JembenchError("the Gaussian init needs the labelled training split of the model's dataset")
    x = model.to_model_space(train_set.pixels01())
    return GaussianInit.fit(x, train_set.labels, model.info.n_classes, lo, hi)


def _describe_init(init: UniformInit | GaussianInit, train_set: Any) -> dict[str, Any]:
    from .sampling import GaussianInit

    d = init.describe()
    if isinstance(init, GaussianInit):
        d.update(fitted_on=f"{train_set.name} {train_set.split} split ({len(train_set)} images)",
                 fitted_on_fingerprint=train_set.fingerprint())
    return d


def generate(model: Any, protocol: GenProtocol, n: Optional[int], *, seed: int = 0,
             batch_size: int = 256, train_set: Any = None, progress: bool = True) -> Samples:
    """Draw ``n`` samples from ``model`` under ``protocol`` (``n=None``: the whole replay buffer)."""
    sub_seed = derive_seed(seed, "gen", protocol.name)
    record: dict[str, Any] = {**protocol.to_dict(), "seed": seed, "derived_seed": sub_seed}
    gen = generator(sub_seed, model.device)
    start = time.perf_counter()
    if protocol.source == "buffer":
        out = _from_buffer(model, protocol, n, gen, batch_size, record)
    else:
        if n is None or n < 1:
            raise JembenchError("fresh chains need --n >= 1")
        out = _fresh(model, protocol, n, gen, batch_size, train_set, record, progress)
    out.seconds = time.perf_counter() - start
    return out


def _fresh(model: Any, proto: GenProtocol, n: int, gen: torch.Generator, batch_size: int, train_set: Any,
           record: dict[str, Any], progress: bool) -> Samples:
    import torch

    from . import chain_runs
    from .metrics.fidelity import quantize
    from .rng import RECIPE
    from .sampling import JEMPPConfig, ReplayBuffer
    from .sampling.trace import mcmc_trace, rounds_trace

    k = model.info.n_classes
    bn_train = proto.bn_train if proto.bn_train is not None else (
        isinstance(proto.sampler, JEMPPConfig) and model.info.norm == "batch")
    init = _init(model, proto, train_set)
    labels = (torch.arange(n, device=gen.device) % k) if proto.conditional else None
    kw = {"value_range": model.info.value_range, "bn_train": bn_train}
    seed, steps = record["derived_seed"], gradient_steps(proto.sampler)
    coupled = bn_train or bool(getattr(proto.sampler, "warmup", 0))
    record.update(n=n, bn_train=bn_train, init=_describe_init(init, train_set), batch_size=batch_size,
                  rng=(f"{RECIPE}: chain i keyed (derived_seed, 'chain')" if not proto.pcd_rounds else
                       f"{RECIPE}: round r's advance noise keyed (derived_seed, 'pcd', r) at the draw's row; the "
                       "buffer's init, draws, restarts and fresh inits from one generator (derived_seed)"),
                  sharding=(chain_runs.SHARDING_FRESH if not proto.pcd_rounds else
                            chain_runs.SHARDING_COUPLED if coupled else chain_runs.SHARDING_PCD))
    warnings: list[str] = []
    observed: dict[str, float] = {}
    if not proto.pcd_rounds:
        x, trace, runs = chain_runs.fresh(model, proto, n, batch_size, init, labels, kw, seed, steps, progress)
        chain_steps = n * steps
    else:
        buf = ReplayBuffer(n, init, gen, reinit_freq=proto.reinit_freq, data=init(n, gen, labels).cpu())
        buf.labels = labels
        advanced, rounds, runs = chain_runs.pcd(model, proto, buf, labels, kw, seed, batch_size, steps,
                                                    progress)
        x, trace = buf.data, rounds_trace(rounds)
        chain_steps = proto.pcd_rounds * proto.pcd_batch * steps
        never = int((~advanced).sum())
        observed["pcd/chains_never_advanced"] = never
        if never:
            warnings.append(f"{never} of {n} buffer chains were never advanced (pcd_rounds x pcd_batch = "
                            f"{proto.pcd_rounds * proto.pcd_batch}); they are init noise: raise "
                            f"{hint('gen', 'pcd_rounds')}")
    out = Samples(x, quantize(model, x), labels.cpu() if labels is not None else None, record,
                  observed, warnings, chain_steps=chain_steps, trace=trace)
    if runs is not None:
        _mcmc_facts(runs, observed, warnings)
        if runs.energy is not None:  # fresh chains: per-chain acceptance and energy traces line up with x
            out.acceptance, out.energy = runs.acceptance, runs.energy
            out.trace = mcmc_trace(out.energy, runs.warmup, out.acceptance)
    return out


def _from_buffer(model: Any, proto: GenProtocol, n: Optional[int], gen: torch.Generator, batch_size: int,
                 record: dict[str, Any]) -> Samples:
    import torch

    from .metrics.fidelity import quantize

    buf = model.replay_buffer
    name = model.info.name
    if buf is None:
        raise JembenchError(f"checkpoint {name!r} has no replay buffer; use a fresh-chain protocol "
                            f"(e.g. {hint('gen', 'protocol', 'sgld')})")
    want = (model.info.in_channels, *model.info.image_size)
    if tuple(buf.shape[1:]) != want:
        raise JembenchError(f"checkpoint {name!r}: replay buffer of shape {tuple(buf.shape[1:])}, model takes {want}")
    images = quantize(model, buf)  # clamps: JEM never clamps its buffer
    lo, hi = model.info.value_range
    outside = float(((buf < lo) | (buf > hi)).float().mean())
    observed = {"buffer/size": len(buf), "buffer/fraction_outside_range": outside}
    keep = torch.arange(len(buf))
    if proto.buffer_top:
        keep = _top_confident(model, images, proto.buffer_top, batch_size)
        observed["buffer/selected"] = len(keep)
    warnings = [f"{outside:.1%} of replay-buffer values lay outside the data range and were clamped"] if outside else []
    if n is not None and n < len(keep):
        perm = torch.randperm(len(keep), generator=gen, device=gen.device).cpu()
        keep = keep[perm[:n]].sort().values
    elif n is not None and n > len(keep):
        warnings.append(f"{hint('gen', 'n', n)} but the buffer of {name!r} gives {len(keep)} samples: all "
                        f"{len(keep)} were used (FID is biased in N: compare only numbers with equal N)")
    record["n"] = len(keep)
    x = model.to_model_space(images[keep].float() / 255.0)
    return Samples(x, images[keep], None, record, observed, warnings)


def _top_confident(model: Any, images: torch.Tensor, top: float, batch_size: int) -> torch.Tensor:
    """Indices of the ``top`` fraction (ceil, at least one) most confident images per predicted class (the
    forward pass: this rank's whole batches, gathered)."""
    import torch

    from . import distributed

    with torch.no_grad():
        probs = distributed.map_batches(
            images, batch_size, lambda b: model(model.to_model_space(b.float().to(model.device) / 255.0)).softmax(-1)
            .cpu(), torch.zeros(0, model.info.n_classes))
    conf, pred = probs.max(-1)
    keep = []
    for c in pred.unique():
        idx = (pred == c).nonzero().squeeze(1)
        order = conf[idx].argsort(descending=True)
        keep.append(idx[order[:max(1, math.ceil(top * len(idx)))]])
    return torch.cat(keep).sort().values
