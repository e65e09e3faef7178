"""What a generation run needs and costs, known before it runs: its preflight checks and its passes
(``Evaluator.preflight`` and ``Evaluator.cost`` of :mod:`jembench.evaluators.gen`)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Iterable

from ..cost import Cost, set_size
from ..generation import gradient_steps
from ..preflight import dataset_problems, eval_set_problems, extractor_problems
from ..settings import Spelling
from .base import SharedSettings
from .common import default_dataset

FRESH_N = 1000  # samples per fresh protocol when --n is not given (FID is biased in N: compare equal N only)

if TYPE_CHECKING:
    from ..models import HybridModel
    from .gen import GenSettings


def preflight(models: list[HybridModel], s: GenSettings, shared: SharedSettings, spell: Spelling) -> Iterable[str]:
    """The reference split(s) and, for the Gaussian init, the training split present and of the model's shape;
    a replay buffer for buffer protocols; the feature extractor's weights available (nothing downloaded)."""
    protos = s.protocols()
    for m in models:
        ds = shared.dataset or default_dataset(m)
        if set(s.metrics) & {"fid", "kid", "prc"}:
            for split in s.reference.split("+"):
                yield from eval_set_problems(m, ds, split, data_dir=shared.data_dir, download=shared.download,
                                             need_labels=False)
        if any(p.init == "gaussian" and p.source == "fresh" for p in protos):
            yield from dataset_problems(ds, "train", data_dir=shared.data_dir, download=shared.download)
        if any(p.source == "buffer" for p in protos) and m.replay_buffer is None:
            yield (f"checkpoint {m.info.name!r} has no replay buffer for {spell.assign('protocol', s.protocol)}; "
                   "use a fresh-chain protocol (e.g. sgld)")
        yield from extractor_problems(s.feature_extractor, ds, fid_weights=s.fid_weights, offline=s.offline,
                                      option=spell.option("feature_extractor"))


def cost(s: GenSettings, shared: SharedSettings, model: HybridModel) -> list[Cost]:
    """Per protocol: chains x SGLD steps (1 forward + 1 backward each; PCD: rounds x batch chains), one forward per
    sample for the class shares (buffer-top: one per buffer image to rank them), extractor passes on the samples;
    the reference set's extractor passes once (cached on disk afterwards)."""
    ds = shared.dataset if isinstance(shared.dataset, str) else default_dataset(model)
    buffer = len(model.replay_buffer) if model.replay_buffer is not None else 0
    ref = sum(set_size(ds, split, None) for split in s.reference.split("+")) \
        if set(s.metrics) & {"fid", "kid", "prc"} else 0
    out = [Cost(f"reference features {ds}/{s.reference}", 0, 0, extractor=ref,
                shared=f"features {ds}/{s.reference}/{s.feature_extractor}")] if ref else []
    for p in s.protocols():
        if p.source == "buffer":
            kept = math.ceil(p.buffer_top * buffer) if p.buffer_top else buffer
            n = min(s.n, kept) if s.n else kept
            fwd, bwd, steps = (buffer if p.buffer_top else 0), 0, 0
        else:
            n = s.n or FRESH_N
            fwd, bwd, steps = _chain_passes(p.sampler, p.pcd_rounds * p.pcd_batch if p.pcd_rounds else n)
        out.append(Cost(f"{p.name}: {n} samples", n, fwd + n, bwd, sampler_steps=steps, extractor=n))
        if p.source == "fresh":
            out += [_rung(p, m, n) if m != 1 else Cost(f"{p.name}: ladder mean energy", n, n)
                    for m in sorted(set(s.ladder or ()))]
    return out


def _rung(p, multiple: int, n: int) -> Cost:
    """A long-run ladder rung above 1x: the protocol's chains again at ``multiple`` x its steps, from the same seed,
    then one forward per sample for the mean energy and extractor passes on the samples."""
    from ..sampling.sgld import JEMPPConfig

    field = "outer_steps" if isinstance(p.sampler, JEMPPConfig) else "steps"
    longer = dataclasses.replace(p.sampler, **{field: multiple * getattr(p.sampler, field)})
    fwd, bwd, steps = _chain_passes(longer, p.pcd_rounds * p.pcd_batch if p.pcd_rounds else n)
    return Cost(f"{p.name}: ladder {multiple}x steps", n, fwd + n, bwd, sampler_steps=steps, extractor=n)


def _chain_passes(sampler, chains: int) -> tuple[int, int, int]:
    """(forward, backward, sampler steps) of ``chains`` chains: one model evaluation per step (a forward and a
    backward; random-walk MH: forward only), MH / MALA one more at each chain's start."""
    from ..sampling.mcmc import MCMCConfig, MHConfig

    steps = chains * gradient_steps(sampler)
    fwd = steps + (chains if isinstance(sampler, MCMCConfig) else 0)
    return fwd, 0 if isinstance(sampler, MHConfig) else fwd, steps
