"""Generation evaluator: samples under named protocols, IS / FID / KID / precision-recall via torch-fidelity.

One :class:`Evaluation` per (checkpoint, protocol). Metric names carry the feature extractor and the
reference split, so numbers from different extractors never share a column: ``is/digits-wrn``,
``fid/digits-wrn/train``, ``kid/inception-v3-compat/train+test``, ``precision/...``, ``recall/...``;
``is_real/<ext>/<ref>`` is the IS of as many real images (same splits), the ceiling to read IS against.
The protocol records the sampling protocol in full, N, seeds, the reference set (dataset, split, size,
content fingerprint), the extractor (name, sha256, layers) and the metric settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .. import defaults
from ..data.imageset import ImageSet
from ..data.registry import get_dataset
from ..errors import JembenchError
from ..generation import PCD_FIELDS, GenProtocol, Samples, generate, make_protocol
from ..metrics import fidelity
from ..models import HybridModel
from ..results import Evaluation, EvaluatorResult, slugify, atomic_savez, atomic_write_bytes
from ..runtime import derive_seed
from .common import Timer, check_compatible, default_dataset, finish, load_models

QUANTISATION = "model space -> to_pixels01 -> clamp [0, 1] -> round(255 x) -> uint8 (as the real images)"
REFERENCE_SPLITS = ("train", "test", "train+test")


@dataclass
class GenResult(EvaluatorResult):
    """``evaluations`` (one per checkpoint x protocol), the results ``document``, and the ``samples`` drawn,
    keyed ``"<checkpoint name>/<protocol name>"``."""

    samples: dict[str, Samples] = field(default_factory=dict, repr=False)


def reference_set(dataset: str, split: str, *, data_dir: Any = None, download: bool = False) -> ImageSet:
    """The reference images: one split, or ``"train+test"`` concatenated (what JEM++ used)."""
    if split not in REFERENCE_SPLITS:
        raise JembenchError(f"--reference {split!r}: choose one of {', '.join(REFERENCE_SPLITS)}")
    parts = [get_dataset(dataset, s, data_dir=data_dir, download=download) for s in split.split("+")]
    if len(parts) == 1:
        return parts[0]
    labels = None if any(p.labels is None for p in parts) else torch.cat([p.labels for p in parts])
    return ImageSet(parts[0].name, split, torch.cat([p.images for p in parts]), labels, parts[0].n_classes,
                    {"parts": [p.meta for p in parts]})


def gen(checkpoints: Sequence[str | Path | HybridModel], *, n: Optional[int] = None,
        protocol: str | GenProtocol | Sequence[str | GenProtocol] = defaults.GEN_PROTOCOLS,
        seed: int = defaults.SEED, out_dir: Optional[str | Path] = None, device: Any = None,
        batch_size: int = defaults.BATCH_SIZE, dataset: Optional[str] = None, data_dir: Any = None,
        download: bool = False, reference: str = defaults.GEN_REFERENCE_SPLIT,
        metrics: Sequence[str] = defaults.GEN_METRICS, feature_extractor: str = defaults.GEN_FEATURE_EXTRACTOR,
        fid_weights: Optional[str | Path] = None, offline: bool = False, cache_dir: Optional[str | Path] = None,
        isc_splits: int = defaults.GEN_ISC_SPLITS, kid_subsets: int = defaults.GEN_KID_SUBSETS,
        kid_subset_size: int = defaults.GEN_KID_SUBSET_SIZE, prc_neighborhood: int = defaults.GEN_PRC_NEIGHBORHOOD,
        save_raw: bool = False, head: Optional[str] = None, norm: Optional[str] = None, progress: bool = True,
        **sampler_overrides: Any) -> GenResult:
    """Sample each checkpoint under each protocol and score the samples (mirrors ``jembench gen``).

    ``protocol``: preset name(s) from :data:`jembench.generation.PRESETS` ("sgld", "pcd", "jem++", "conditional",
    "buffer", "buffer-top") or :class:`GenProtocol` objects. ``sampler_overrides`` (``steps``, ``step_size``,
    ``noise``, ``init``, ``pcd_rounds``, ``pcd_batch``, ``reinit_freq``, ``conditional``, ``buffer_top``,
    ``bn_train``) apply to every protocol. ``n``: samples per protocol (default: ``defaults.GEN_N`` for fresh
    chains, the whole replay buffer for buffer protocols). ``reference``: "train" (default), "test" or
    "train+test". ``feature_extractor``: "auto", "inception", a bundled name ("digits-wrn") or a classifier
    checkpoint path. Offline, Inception needs ``fid_weights`` (or torch's hub cache) and fails at once without.
    """
    specs = [protocol] if isinstance(protocol, (str, GenProtocol)) else list(protocol)
    pcd_set = [k for k in PCD_FIELDS if sampler_overrides.get(k) is not None]
    if pcd_set and not any(make_protocol(p).pcd_rounds for p in specs):
        raise JembenchError(f"{', '.join('--' + k.replace('_', '-') for k in pcd_set)} set but no PCD protocol "
                            "chosen: add --protocol pcd")
    protos = [make_protocol(p, **sampler_overrides) for p in specs]
    if len({p.name for p in protos}) != len(protos):
        raise JembenchError("two protocols share a name; give each GenProtocol its own name")
    metrics = list(dict.fromkeys(metrics))
    bad = set(metrics) - set(fidelity.METRICS)
    if bad:
        raise JembenchError(f"unknown metric(s) {', '.join(sorted(bad))}; choose from {', '.join(fidelity.METRICS)}")
    models = load_models(checkpoints, device, head=head, norm=norm)
    dev = models[0].device if models else torch.device("cpu")
    fid_cache = Path(cache_dir) / "fidelity" if cache_dir else Path(defaults.GEN_FIDELITY_CACHE)
    fid_cache = fid_cache.expanduser()
    extractors: dict[str, fidelity.Extractor] = {}
    for m in models:  # resolve every extractor (and its weights) before any sampling: fail at once
        ds = dataset or default_dataset(m)
        if ds not in extractors:
            extractors[ds] = fidelity.resolve_extractor(feature_extractor, ds, fid_weights=fid_weights, offline=offline)
    needs_reference = bool(set(metrics) & {"fid", "kid", "prc"})
    refs: dict[str, tuple[ImageSet, dict[str, torch.Tensor], dict[str, Any]]] = {}
    trains: dict[str, ImageSet] = {}
    evaluations, all_samples = [], {}
    slugs = _slugs(models)
    for m, slug in zip(models, slugs):
        ds = dataset or default_dataset(m)
        ext = extractors[ds]
        if needs_reference and ds not in refs:
            ref = reference_set(ds, reference, data_dir=data_dir, download=download)
            check_compatible(m, ref, need_labels=False)
            feats, cache = fidelity.reference_features(ref, ext, cache_dir=fid_cache, batch_size=batch_size, device=dev)
            refs[ds] = (ref, feats, cache)
        if any(p.init == "gaussian" and p.source == "fresh" for p in protos) and ds not in trains:
            trains[ds] = get_dataset(ds, "train", data_dir=data_dir, download=download)
        for proto in protos:
            try:
                with Timer() as t:
                    ev, samples = _evaluate(m, proto, n, ext, refs.get(ds), trains.get(ds), ds, reference, metrics,
                                            seed=seed, batch_size=batch_size, isc_splits=isc_splits,
                                            kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                                            prc_neighborhood=prc_neighborhood, progress=progress)
                    ev.artifacts = _write_artifacts(out_dir, f"{slug}-{proto.name}", m, samples, save_raw)
                ev.wall_time_s = t.seconds
                all_samples[f"{m.info.name}/{proto.name}"] = samples
            except JembenchError as exc:
                if len(models) * len(protos) == 1:
                    raise
                ev = Evaluation("gen", m.info.to_dict(), {"sampling": proto.to_dict()}, status="failed", error=str(exc))
            evaluations.append(ev)
    if evaluations and all(e.status == "failed" for e in evaluations):
        raise JembenchError(evaluations[0].error or "every generation evaluation failed")
    config = {"n": n, "protocols": [p.name for p in protos], "reference": reference, "metrics": metrics,
              "feature_extractor": feature_extractor, "offline": offline, "batch_size": batch_size,
              **{k: v for k, v in sampler_overrides.items() if v is not None}}
    doc = finish(out_dir, evaluations, device=dev, seed=seed, config=config)
    return GenResult(evaluations, doc, all_samples)


def _evaluate(model: HybridModel, proto: GenProtocol, n: Optional[int], ext: fidelity.Extractor,
              ref: Optional[tuple[ImageSet, dict[str, torch.Tensor], dict[str, Any]]], train: Optional[ImageSet],
              dataset: str, reference: str, metrics: list[str], *, seed: int, batch_size: int, isc_splits: int,
              kid_subsets: int, kid_subset_size: int, prc_neighborhood: int, progress: bool
              ) -> tuple[Evaluation, Samples]:
    if n is None and proto.source == "fresh":
        n = defaults.GEN_N
    samples = generate(model, proto, n, seed=seed, batch_size=batch_size, train_set=train, progress=progress)
    with Timer() as t_feat:
        fake = fidelity.extract(ext, samples.images, batch_size=batch_size, device=model.device)
    real = ref[1] if ref is not None else None
    metric_seed = derive_seed(seed, "gen-metrics")
    values, settings = fidelity.fidelity_metrics(fake, real, ext, metrics=metrics, isc_splits=isc_splits,
                                                 kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                                                 prc_neighborhood=prc_neighborhood, seed=metric_seed)
    name, n_used = ext.name, len(samples.images)
    out: dict[str, float] = {}
    for key, value in values.items():
        metric = f"{key}/{name}" if key in ("is", "is_std") else f"{key}/{name}/{reference}"
        out[metric] = value
    if "is" in metrics and real is not None:
        out[f"is_real/{name}/{reference}"] = _real_is(real[ext.layers["is"]], n_used, isc_splits, metric_seed)
    warnings = list(samples.warnings)
    dim = fake[ext.layers["fid"]].shape[1]
    if "fid" in metrics and n_used < dim:
        warnings.append(f"FID from N={n_used} samples < feature dimension {dim}: the covariance is singular and FID "
                        "strongly biased; compare only numbers with equal N")
    rows, extra = _class_rows(model, samples, fake, ext, batch_size)
    out.update(extra)
    out.update({k: float(v) for k, v in samples.observed.items()})
    out["time/sampling_s"] = samples.seconds
    out["time/features_s"] = t_feat.seconds
    if samples.chain_steps:
        out["time/chain_steps_per_s"] = samples.chain_steps / max(samples.seconds, 1e-9)
    protocol = {"sampling": samples.protocol, "n": n_used, "dataset": dataset,
                "reference": _reference_record(ref, reference) if ref is not None else None,
                "feature_extractor": ext.describe(), "quantisation": QUANTISATION,
                "metric_settings": settings, "torch_fidelity": _tf_version()}
    ev = Evaluation("gen", model.info.to_dict(), protocol, metrics=out, rows=rows, warnings=warnings)
    return ev, samples


def _real_is(logits: torch.Tensor, n: int, splits: int, seed: int) -> float:
    """IS of ``n`` real images drawn with ``seed`` (all if fewer), so it compares with the samples' IS."""
    from ..runtime import generator

    idx = torch.randperm(len(logits), generator=generator(seed))[:n]
    return fidelity.inception_score(logits[idx], splits, seed)[0]


def _reference_record(ref: tuple[ImageSet, dict[str, torch.Tensor], dict[str, Any]], split: str) -> dict[str, Any]:
    imageset, _, cache = ref
    return {"dataset": imageset.name, "split": split, "n": len(imageset), "fingerprint": imageset.fingerprint(),
            "cache_key": cache["key"]}


@torch.no_grad()
def _class_rows(model: HybridModel, samples: Samples, fake: dict[str, torch.Tensor], ext: fidelity.Extractor,
                batch_size: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per class: the share of samples the model (and a classifier extractor) assigns to it; for conditional
    samples also how often each agrees with the target class."""
    k = model.info.n_classes
    x = samples.images
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
    """Sample grid PNG (per-class grid for conditional samples) and, with ``save_raw``, the uint8 samples (npz)."""
    if out_dir is None:
        return {}
    from ..figures import samples as figs

    out, arts = Path(out_dir), {}
    scale = figs.auto_scale(max(model.info.image_size))
    rel = f"samples/{stem}.png"
    atomic_write_bytes(out / rel, figs.png_bytes(figs.grid(samples.images[:defaults.GEN_GRID_MAX], scale=scale)))
    arts["samples"] = rel
    if samples.labels is not None:
        rel = f"samples/{stem}-per-class.png"
        grid = figs.class_grid(samples.images, samples.labels, model.info.n_classes, scale=scale)
        atomic_write_bytes(out / rel, figs.png_bytes(grid))
        arts["samples per class"] = rel
    if save_raw:
        rel = f"raw/{stem}.npz"
        arrays = {"images": samples.images}
        if samples.labels is not None:
            arrays["labels"] = samples.labels
        atomic_savez(out / rel, **arrays)
        arts["raw samples"] = rel
    return arts


def _slugs(models: list[HybridModel]) -> list[str]:
    """File-name-safe checkpoint names, made unique with the sha256 prefix where names collide."""
    base = [slugify(m.info.name or "model", "model") for m in models]
    return [b if base.count(b) == 1 else f"{b}-{(m.info.sha256 or str(i))[:8]}"
            for i, (b, m) in enumerate(zip(base, models))]


def _tf_version() -> str:
    import torch_fidelity

    return torch_fidelity.__version__
