"""Generation evaluator: samples under named protocols, IS / FID / KID / precision-recall via torch-fidelity.

One :class:`Evaluation` per (checkpoint, protocol). Metric names carry the feature extractor and the
reference split, so numbers from different extractors never share a column: ``is/digits-wrn``,
``fid/digits-wrn/train``, ``kid/inception-v3-compat/train+test``, ``precision/...``, ``recall/...``;
``is_real/<ext>/<ref>`` is the IS of as many real images (same splits), the ceiling to read IS against.
Sampling and feature-extraction times and the sampler's bookkeeping go to each evaluation's ``provenance``.
The protocol records the sampling protocol in full, N, seeds, the reference set (dataset, split, size,
content fingerprint), the extractor (name, sha256, layers) and the metric settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .. import background, defaults
from ..errors import JembenchError
from ..generation import PCD_FIELDS, PRESETS, GenProtocol, Samples, generate, make_protocol
from ..io import atomic_savez
from ..metrics.names import FIDELITY
from ..results import Evaluation, EvaluatorResult
from ..runtime import derive_seed
from ..settings import Settings, option
from .base import Context, Evaluator, SharedSettings
from .gen_plan import FRESH_N, cost as plan_cost, preflight as plan_preflight
from .common import Timer, check_compatible, default_dataset
from .gen_chains import chain_diagnostics, record, run_ladder, write_trace

if TYPE_CHECKING:  # torch-backed: imported where used, so the settings and the registry entry stay light
    import torch

    from ..data.imageset import ImageSet
    from ..metrics import fidelity
    from ..models import HybridModel

NAME = "gen"
QUANTISATION = "model space -> to_pixels01 -> clamp [0, 1] -> round(255 x) -> uint8 (as the real images)"
REFERENCE_SPLITS = ("train", "test", "train+test")
SHARED = ("dataset", "seed", "device", "batch_size", "data_dir", "download", "head", "norm", "cache_dir", "precision")
GRID_MAX = 100  # images in a sample grid
MCMC_FIELDS = ("temperature", "warmup", "target_accept")  # MH / MALA only
SAMPLER_FIELDS = ("steps", "step_size", "noise", *MCMC_FIELDS, "init", "conditional", *PCD_FIELDS, "buffer_top",
                  "bn_train")


@dataclass(frozen=True)
class GenSettings(Settings):
    """Settings of ``jembench gen``; the sampler fields (None: each protocol's own) apply to every protocol."""

    n: Optional[int] = option(None, f"Samples per protocol (default: {FRESH_N} fresh chains; the whole replay "
                                    "buffer). FID is biased in N: compare equal N only.", min=1)
    protocol: tuple[str, ...] = option(
        ("sgld",), "Sampling protocol(s), repeatable or comma list: sgld (fresh chains from U(-1,1), JEM SGLD), pcd "
                   "(JEM's uncond_samples: PCD rounds into a buffer of N chains), jem++ (per-class Gaussian init, "
                   "JEM++ sampler), conditional (SGLD on f(x)[y], N/K per class), mh (random-walk Metropolis-"
                   "Hastings), mala (Metropolis-adjusted Langevin; both on p~^(1/T) in the input box, with per-chain "
                   "acceptance rates), buffer (the checkpoint's replay "
                   "buffer), buffer-top (its most confident fraction per class, as SADA-JEM).",
        choices=lambda: list(PRESETS), noun="generation protocol", aliases=("protocols",),
        accepts=("jembench.generation:GenProtocol",),
        repeatable=True, metavar="NAME")
    steps: Optional[int] = option(None, "SGLD steps per chain (JEM++ sampler: outer steps M; mh / mala: kept steps "
                                        "after the warm-up) [protocol's own: sgld 40, jem++ 10, mh / mala 100].",
                                  min=0)
    step_size: Optional[float] = option(None, "SGLD step size [protocol's own: 1.0; JEM++ 0.2; mh: proposal std 0.01; "
                                              "mala: eps 0.001].", min=0)
    noise: Optional[float] = option(None, "SGLD noise std [protocol's own: 0.01; JEM++ 0].", min=0)
    temperature: Optional[float] = option(None, "mh / mala: temperature T, the chains target p~^(1/T) [1].", above=0)
    warmup: Optional[int] = option(None, "mh / mala: warm-up steps before the kept ones, adapting the step toward "
                                         "--target-accept (0: the step as given) [50].", min=0)
    target_accept: Optional[float] = option(None, "mh / mala: warm-up's target acceptance rate [mh 0.234, mala "
                                                  "0.574].", above=0, max=0.999)
    init: Optional[str] = option(None, "Chain init: U(-1,1) or the per-class Gaussians fitted on the training split "
                                       "[protocol's own].", choices=("uniform", "gaussian"))
    conditional: Optional[bool] = option(None, "Class-conditional chains for every fresh protocol [protocol's own].")
    pcd_rounds: Optional[int] = option(None, "pcd protocols: rounds of a batch drawn from the buffer, advanced, "
                                             "written back; cost rounds x batch x steps whatever --n [100].", min=0)
    pcd_batch: Optional[int] = option(None, "pcd protocols: chains per round [64].", min=1)
    reinit_freq: Optional[float] = option(None, "pcd protocols: share of each draw restarted from the init [0.05].",
                                          min=0, max=1)
    buffer_top: Optional[float] = option(None, "buffer-top: fraction kept per predicted class, by max softmax [0.1; "
                                               "SADA-JEM: 0.1 for IS, 0.9 for FID].", above=0, max=1)
    bn_train: Optional[bool] = option(None, "Batch norm in train mode while sampling [protocol's own: train mode "
                                            "for the JEM++ sampler on BN models, else eval].")
    metrics: tuple[str, ...] = option(FIDELITY, "Metrics, comma list: is, fid, kid, prc "
                                                "(precision/recall).", choices=FIDELITY,
                                      noun="metric")
    reference: str = option("train", "Reference split for FID/KID/PRC (JEM++ used train+test).",
                            choices=REFERENCE_SPLITS)
    feature_extractor: str = option(
        "auto", "auto (the dataset's bundled reference classifier, e.g. digits-wrn; else Inception), inception "
                "(torch-fidelity's), digits-wrn, or a jembench classifier checkpoint trained on the dataset. "
                f"digits-wrn ships with jembench (bundled:digits-reference-classifier; "
                f"${defaults.GEN_EXTRACTORS_ENV}=DIR overrides it).", metavar="NAME|PATH")
    fid_weights: Optional[str] = option(None, "torch-fidelity's Inception weights file "
                                              "(weights-inception-2015-12-05-6726825d.pth), for machines without "
                                              "internet.", metavar="FILE", path="file")
    offline: bool = option(False, "Never download; fail at once if Inception weights are needed and absent.")
    kid_subset_size: int = option(1000, "KID subset size (capped at the smaller set; recorded).", min=2)
    kid_subsets: int = option(100, "KID subsets.", min=1)
    isc_splits: int = option(10, "Inception-score splits.", min=1)
    prc_neighborhood: int = option(3, "k of the k-NN manifolds of precision / recall.", min=1)
    ladder: Optional[tuple[int, ...]] = option(
        None, "Long-run check: chain lengths as multiples of each fresh protocol's own steps K (1,10,100: K, 10K, "
              "100K), same seed; IS, FID and mean energy per length as ladder/<steps>/... (Nijkamp et al. 2019); "
              "buffer protocols are skipped; none = off.", min=1, metavar="LIST")

    def check(self, spell):
        from ..sampling.mcmc import MCMCConfig  # torch-backed: when settings are checked, not when listed

        if not self.protocol:
            yield f"{spell.assign('protocol', '')}: name at least one of {', '.join(PRESETS)}"
        names = [p.name if isinstance(p, GenProtocol) else p for p in self.protocol]
        if len(set(names)) != len(names):
            yield f"{spell.assign('protocol', names)}: names a protocol twice; give each once"
        if not self.metrics:
            yield f"{spell.assign('metrics', '')}: name at least one of {', '.join(FIDELITY)}"
        pcd_set = [k for k in PCD_FIELDS if getattr(self, k) is not None]
        if pcd_set and not any(make_protocol(p).pcd_rounds for p in self.protocol):
            yield (f"{', '.join(spell.option(k) for k in pcd_set)} set but no PCD protocol chosen: add "
                   f"{spell.assign('protocol', 'pcd')}")
        mcmc = [isinstance(make_protocol(p).sampler, MCMCConfig) for p in self.protocol]
        mcmc_set = [k for k in MCMC_FIELDS if getattr(self, k) is not None]
        if mcmc_set and not any(mcmc):
            yield (f"{', '.join(spell.option(k) for k in mcmc_set)} set but no MH / MALA protocol chosen: add "
                   f"{spell.assign('protocol', 'mala')}")
        if self.step_size == 0 and any(mcmc):
            yield f"{spell.assign('step_size', 0)}: mh / mala need a step > 0"
        if self.bn_train and mcmc and all(mcmc):
            yield (f"{spell.option('bn_train')} set but mh / mala always run BatchNorm in eval mode (a density that "
                   "depends on the batch is no fixed target)")
        if self.noise is not None and mcmc and all(mcmc):
            yield (f"{spell.option('noise')} set but mh / mala have no free noise (MALA's is sqrt(2 step)): use "
                   f"{spell.option('step_size')} or {spell.option('temperature')}")

    def protocols(self) -> list[GenProtocol]:
        """Each protocol with the sampler fields applied."""
        overrides = {k: getattr(self, k) for k in SAMPLER_FIELDS}
        return [make_protocol(p, **overrides) for p in self.protocol]


@dataclass
class GenResult(EvaluatorResult):
    """``evaluations`` (one per checkpoint x protocol), the results ``document``, and the ``samples`` drawn,
    keyed ``"<checkpoint name>/<protocol name>"``."""

    samples: dict[str, Samples] = field(default_factory=dict, repr=False)


def reference_set(dataset: str, split: str, *, data_dir: Any = None, download: bool = False) -> ImageSet:
    """The reference images: one split, or ``"train+test"`` concatenated (what JEM++ used). A source with one split
    (``npz:`` holding only ``x``) is that split, ``"all"``, whatever was asked: never relabelled, never doubled."""
    import torch

    from ..data.imageset import ImageSet
    from ..data.registry import get_dataset

    if split not in REFERENCE_SPLITS:
        raise JembenchError(f"--reference {split!r}: choose one of {', '.join(REFERENCE_SPLITS)}")
    parts = [get_dataset(dataset, s, data_dir=data_dir, download=download) for s in split.split("+")]
    if len(parts) == 1 or parts[0].split != split.split("+")[0]:  # a single-split source gives its one split ("all")
        return parts[0]  # for every split asked: use it once, named by what it is
    labels = None if any(p.labels is None for p in parts) else torch.cat([p.labels for p in parts])
    return ImageSet(parts[0].name, split, torch.cat([p.images for p in parts]), labels, parts[0].n_classes,
                    {"parts": [p.meta for p in parts]})


def run(models: list[HybridModel], s: GenSettings, shared: SharedSettings, ctx: Context) -> list[Evaluation]:
    """Sample each model under each protocol and score the samples. Every feature extractor (and its weights) is
    resolved before any sampling, so a missing file fails at once; with several evaluations, one that fails
    is recorded as failed and the others go on."""
    from ..data.registry import get_dataset
    from ..metrics import fidelity

    protos = s.protocols()
    fid_cache = (Path(shared.cache_dir) / "fidelity" if shared.cache_dir else Path(defaults.GEN_FIDELITY_CACHE))
    fid_cache = fid_cache.expanduser()
    datasets = {id(m): shared.dataset or default_dataset(m) for m in models}
    extractors = {ds: fidelity.resolve_extractor(s.feature_extractor, ds, fid_weights=s.fid_weights,
                                                 offline=s.offline) for ds in dict.fromkeys(datasets.values())}
    refs: dict[str, tuple[ImageSet, dict[str, torch.Tensor], dict[str, Any]]] = {}
    trains: dict[str, ImageSet] = {}
    evaluations = []
    for m in models:
        ds = datasets[id(m)]
        if set(s.metrics) & {"fid", "kid", "prc"} and ds not in refs:
            ref = reference_set(ds, s.reference, data_dir=shared.data_dir, download=shared.download)
            check_compatible(m, ref, need_labels=False)
            refs[ds] = (ref, *fidelity.reference_features(ref, extractors[ds], cache_dir=fid_cache,
                                                          batch_size=shared.batch_size, device=m.device))
        if any(p.init == "gaussian" and p.source == "fresh" for p in protos) and ds not in trains:
            trains[ds] = get_dataset(ds, "train", data_dir=shared.data_dir, download=shared.download)
        for proto in protos:
            try:
                with Timer() as t:
                    ev, samples = _evaluate(m, proto, extractors[ds], refs.get(ds), trains.get(ds), ds, s, shared,
                                            ctx.progress)
                    stem = f"{ctx.slug(m)}-{proto.name}"
                    ev.artifacts = _write_artifacts(ctx.out_dir, stem, m, samples, ctx.save_raw)
                    ev.artifacts.update(write_trace(ctx.out_dir, stem, ev, samples, ctx.save_raw))
                ev.wall_time_s = t.seconds
                ctx.extras.setdefault("samples", {})[f"{m.info.name}/{proto.name}"] = samples
            except JembenchError as exc:
                if len(models) * len(protos) == 1:
                    raise
                ev = Evaluation(NAME, m.info.to_dict(), {"sampling": proto.to_dict()}, status="failed", error=str(exc))
            evaluations.append(ev)
    if evaluations and all(e.status == "failed" for e in evaluations):
        raise JembenchError(evaluations[0].error or "every generation evaluation failed")
    return evaluations


def _evaluate(model: HybridModel, proto: GenProtocol, ext: fidelity.Extractor,
              ref: Optional[tuple[ImageSet, dict[str, torch.Tensor], dict[str, Any]]], train: Optional[ImageSet],
              dataset: str, s: GenSettings, shared: SharedSettings, progress: bool) -> tuple[Evaluation, Samples]:
    """Draw one protocol's samples from one model and score them."""
    n = FRESH_N if s.n is None and proto.source == "fresh" else s.n
    samples = generate(model, proto, n, seed=shared.seed, batch_size=shared.batch_size, train_set=train,
                       progress=progress)
    real = ref[1] if ref is not None else None
    ref_split = ref[0].split if ref is not None else s.reference  # "all" for a single-split npz: what it is
    score = lambda smp, keys=tuple(s.metrics): _score(smp, ext, real, s, shared, keys, model.device,  # noqa: E731
                                                      ref_split)
    (out, settings, fake, features_s), n_used = score(samples), len(samples.images)
    warnings = list(samples.warnings)
    dim = fake[ext.layers["fid"]].shape[1]
    if "fid" in s.metrics and n_used < dim:
        warnings.append(f"FID from N={n_used} samples < feature dimension {dim}: the covariance is singular and FID "
                        "strongly biased; compare only numbers with equal N")
    rows, extra = _class_rows(model, samples, fake, ext, shared.batch_size)
    out.update(extra)
    time = {"sampling_s": samples.seconds, "features_s": features_s}
    if samples.chain_steps:
        time["chain_steps_per_s"] = samples.chain_steps / max(samples.seconds, 1e-9)
    protocol = {"sampling": samples.protocol, "n": n_used, "dataset": dataset,
                "reference": _reference_record(ref) if ref is not None else None,
                "feature_extractor": ext.describe(), "quantisation": QUANTISATION,
                "metric_settings": settings, "torch_fidelity": _tf_version()}
    ev = Evaluation(NAME, model.info.to_dict(), protocol, metrics=out, rows=rows, warnings=warnings,
                    provenance={"time": time, "observed": {k: float(v) for k, v in samples.observed.items()}})
    record(ev, *chain_diagnostics(samples, f"{model.info.name} / {proto.name}"))
    if s.ladder and proto.source == "fresh":
        keys = tuple(k for k in s.metrics if k in ("is", "fid"))
        run_ladder(ev, model, proto, samples, s.ladder, keys, lambda smp: score(smp, keys)[0], n=n, seed=shared.seed,
                   batch_size=shared.batch_size, train_set=train, progress=progress)
    return ev, samples


def _score(samples: Samples, ext: fidelity.Extractor, real: Optional[dict[str, torch.Tensor]], s: GenSettings,
           shared: SharedSettings, keys: tuple, device: Any, ref_split: str) -> tuple[dict, dict, dict, float]:
    """Metrics ``keys`` of ``samples`` (+ the real IS ceiling), metric settings, features, extraction seconds."""
    from ..metrics import fidelity

    with Timer() as t_feat:
        fake = fidelity.extract(ext, samples.images, batch_size=shared.batch_size, device=device)
    metric_seed = derive_seed(shared.seed, "gen-metrics")
    values, settings = fidelity.fidelity_metrics(fake, real, ext, metrics=list(dict.fromkeys(keys)),
                                                 isc_splits=s.isc_splits, kid_subsets=s.kid_subsets,
                                                 kid_subset_size=s.kid_subset_size,
                                                 prc_neighborhood=s.prc_neighborhood, seed=metric_seed)
    out = {metric_name(key, ext.name, ref_split): value for key, value in values.items()}
    if "is" in keys and real is not None:
        out[f"is_real/{ext.name}/{ref_split}"] = _real_is(real[ext.layers["is"]], len(samples.images),
                                                            s.isc_splits, metric_seed)
    return out, settings, fake, t_feat.seconds


def metric_name(key: str, extractor: str, reference: str) -> str:
    """``fid/digits-wrn/train``; IS has no reference: ``is/digits-wrn``."""
    return f"{key}/{extractor}" if key in ("is", "is_std") else f"{key}/{extractor}/{reference}"


def _real_is(logits: torch.Tensor, n: int, splits: int, seed: int) -> float:
    """IS of ``n`` real images drawn with ``seed`` (all if fewer), so it compares with the samples' IS."""
    import torch

    from ..metrics import fidelity
    from ..runtime import generator

    idx = torch.randperm(len(logits), generator=generator(seed))[:n]
    return fidelity.inception_score(logits[idx], splits, seed)[0]


def _reference_record(ref: tuple[ImageSet, dict[str, torch.Tensor], dict[str, Any]]) -> dict[str, Any]:
    imageset, _, cache = ref
    return {"dataset": imageset.name, "split": imageset.split, "n": len(imageset),
            "fingerprint": imageset.fingerprint(), "cache_key": cache["key"]}


def _class_rows(model: HybridModel, samples: Samples, fake: dict[str, torch.Tensor], ext: fidelity.Extractor,
                batch_size: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per class: the share of samples the model (and a classifier extractor) assigns to it; for conditional
    samples also how often each agrees with the target class."""
    import torch

    k = model.info.n_classes
    x = samples.images
    with torch.no_grad():
        pred_model = torch.cat([model(model.to_model_space(x[s:s + batch_size].float().to(model.device) / 255.0))
                                .argmax(-1).cpu() for s in range(0, len(x), batch_size)])
    pred_ext = fake["logits"].argmax(-1) if ext.kind == "classifier" and ext.n_classes == k else None
    rows, metrics = [], {}
    y = samples.labels
    for c in range(k):
        row: dict[str, Any] = {"class": c, "share/model": float((pred_model == c).float().mean())}
        if pred_ext is not None:
            row[f"share/{ext.name}"] = float((pred_ext == c).float().mean())
        if y is not None and (y == c).any():
            row["agree/model"] = float((pred_model[y == c] == c).float().mean())
            if pred_ext is not None:
                row[f"agree/{ext.name}"] = float((pred_ext[y == c] == c).float().mean())
        rows.append(row)
    if y is not None:
        metrics["cond_acc/model"] = float((pred_model == y).float().mean())
        if pred_ext is not None:
            metrics[f"cond_acc/{ext.name}"] = float((pred_ext == y).float().mean())
    return rows, metrics


def _write_artifacts(out_dir: Optional[str | Path], stem: str, model: HybridModel, samples: Samples,
                     save_raw: bool) -> dict[str, str]:
    """Sample grid PNG (per-class grid for conditional samples; drawn through the figure queue,
    :mod:`jembench.background`) and, with ``save_raw``, the uint8 samples (npz)."""
    if out_dir is None:
        return {}
    from ..figures.samples import grid_files

    out, arts = Path(out_dir), {}
    rel = f"samples/{stem}.png"
    background.render(f"sample grid {rel}", grid_files, samples.images, samples.labels, model.info.n_classes,
                      max(model.info.image_size), out / rel, out / f"samples/{stem}-per-class.png", GRID_MAX)
    arts["samples"] = rel
    if samples.labels is not None:
        arts["samples per class"] = f"samples/{stem}-per-class.png"
    if save_raw:
        rel = f"raw/{stem}.npz"
        arrays = {"images": samples.images}
        if samples.labels is not None:
            arrays["labels"] = samples.labels
        atomic_savez(out / rel, **arrays)
        arts["raw samples"] = rel
    return arts


def _tf_version() -> str:
    import torch_fidelity

    return torch_fidelity.__version__


def summary_text(result: GenResult) -> str:
    """The command's terminal output: one line per checkpoint and protocol."""
    lines = []
    for ev in result.evaluations:
        name = f"{ev.checkpoint.get('name')} / {ev.protocol.get('sampling', {}).get('name')}"
        if ev.status != "ok":
            lines.append(f"{name}: failed: {ev.error}")
            continue
        shown = {k: v for k, v in ev.metrics.items() if not k.startswith(("is_std", "kid_std", "ladder/"))}
        nums = ", ".join(f"{k} = {v:.4g}" for k, v in shown.items())
        t = ev.provenance["time"]
        lines.append(f"{name} (n={ev.protocol['n']}, extractor {ev.protocol['feature_extractor']['name']}): {nums}; "
                     f"sampling {t['sampling_s']:.1f}s, features {t['features_s']:.1f}s")
        for steps in (ev.protocol.get("ladder") or {}).get("steps", []):
            rung = {k.split("/", 2)[2]: v for k, v in ev.metrics.items() if k.startswith(f"ladder/{steps}/")}
            lines.append(f"  long run, {steps} steps: " + ", ".join(f"{k} = {v:.4g}" for k, v in rung.items()))
        lines += [f"  warning: {w}" for w in ev.warnings]
    return "\n".join(lines)


EVALUATOR = Evaluator(
    name=NAME, title="Generation", settings=GenSettings, run=run, result=GenResult, summary=summary_text,
    shared=SHARED, headline=("fid/*/*", "is/*", "kid/*/*"), headline_last=False,
    metrics=("is/*", "is_std/*", "is_real/*/*", "fid/*/*", "kid/*/*", "kid_std/*/*", "precision/*/*", "recall/*/*",
             "cond_acc/*", "chain/*", "ladder/*"),
    figures="Sample grids", positional=(), preflight=plan_preflight, cost=plan_cost,
    short_help="IS / FID / KID / precision-recall of samples drawn under named protocols.",
    help="""Generation: draw samples under each protocol, score IS / FID / KID / precision-recall.

    Samples are quantised like real images (clamp to the data range, round to uint8) before any metric.
    Metric names carry the feature extractor and reference split (fid/digits-wrn/train): numbers from
    different extractors never share a column. Reference features are cached on disk by content
    (--cache-dir, default ~/.cache/jembench/fidelity). Writes results.json, sample grids (pixels as
    sampled) and, with --save-raw, the uint8 samples (npz). CKPT defaults to $JEMBENCH_CKPT.

    \b
    Examples:
      jembench gen bundled:jem-digits                                 1000 fresh SGLD samples, digits-wrn extractor
      jembench gen ckpt.pt --protocol pcd,conditional --n 500 --steps 40
      jembench gen ckpt.pt --protocol mala --steps 200 --temperature 1 --warmup 50   MALA, acceptance in provenance
      jembench gen jem.pt --protocol buffer --reference train+test    JEM++'s protocol (replay buffer vs train+test)
      jembench gen jem.pt --protocol buffer-top --buffer-top 0.1 --metrics is
      jembench gen jem.pt --offline --fid-weights weights-inception-2015-12-05-6726825d.pth
    """)

gen = EVALUATOR.function()
