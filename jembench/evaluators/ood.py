"""OOD detection: how well each score separates the in-distribution test set from each OOD set.

``ood(checkpoints, in_dataset, out)`` mirrors ``jembench ood``. Scores and conventions: :mod:`jembench.scores`
(higher = more in-distribution); metrics: :mod:`jembench.metrics.ood` (in-distribution = positive class).
Logit scores of a set come from ONE forward pass (the shared :class:`~jembench.forward.ForwardCache`, so
``run-all`` reuses the accuracy pass); ``gradnorm`` adds one input-gradient pass per set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .. import defaults
from ..data.imageset import ImageSet
from ..errors import JembenchError
from ..figures import close
from ..figures.ood import SAVE_KW, roc_curves, score_histograms
from ..forward import ForwardCache
from ..metrics.ood import AUPR_METHOD, BOOTSTRAP_METHOD, FPR_CONVENTIONS, ood_metrics, sanitize
from ..models import HybridModel
from ..results import Evaluation, EvaluatorResult, slugify, atomic_savefig, atomic_savez
from ..runtime import derive_seed, resolve_device
from ..scores import CONVENTION, LOGIT_SCORES, gradnorm_scores, logit_scores, parse_scores
from .common import Timer, finish, load_eval_set, load_models

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95_in_kept", "fpr95_ood_caught", "detection_error")
NOISE_RULE = ("x + sigma * N(0, I) in model space (jembench.forward.test_noise, seed = noise_seed): sample i gets "
              "the same draw in the in-distribution set and in every OOD set")
GRADNORM_RULE = ("-||d log p~(x)/dx||_2 over all C*H*W model-space inputs, eval mode, batched (per-sample exact)")


@dataclass
class OODResult(EvaluatorResult):
    """``evaluations`` (one per checkpoint), the results ``document`` (what ``--json`` prints), per-sample
    ``scores`` (per checkpoint: ``{"in": {score: array}, "out": {set: {score: array}}}``) and ``timings``."""

    scores: list[dict[str, Any]] = field(default_factory=list, repr=False)
    timings: list[dict[str, float]] = field(default_factory=list)
    out_dir: Optional[Path] = None

    def table(self):
        """All rows as a pandas DataFrame, with a ``checkpoint`` column."""
        import pandas as pd

        return pd.DataFrame([{"checkpoint": e.checkpoint.get("name"), **r} for e in self.evaluations for r in e.rows])


def expand_out(out: Optional[Iterable[str]], in_name: str) -> list[str]:
    """OOD set names with presets expanded (``jem``, ``digits``, ``synthetic``; see defaults.OOD_PRESETS),
    comma lists split (except npz:/folder: paths), duplicates dropped. None/empty -> the in-distribution's preset."""
    items: list[str] = []
    for o in out or ():
        o = str(o).strip()
        items += [o] if o.startswith(("npz:", "folder:")) else [t.strip() for t in o.split(",") if t.strip()]
    if not items:
        items = [defaults.OOD_DEFAULT_PRESET.get(in_name, "synthetic")]
    names: list[str] = []
    for item in items:
        for name in defaults.OOD_PRESETS.get(item, (item,)):
            if name not in names:
                names.append(name)
    return names


def _load_out_sets(names: Sequence[str], in_set: ImageSet, model: HybridModel, *, data_dir: Any, download: bool,
                   seed: int, n: Optional[int]) -> dict[str, ImageSet]:
    from ..data.ood_sets import load_ood_set

    shape = (model.info.in_channels, *model.info.image_size)
    return {name: load_ood_set(name, in_set, shape, split="test", data_dir=data_dir, download=download, seed=seed,
                               n=n) for name in names}


def _set_protocol(s: ImageSet) -> dict[str, Any]:
    meta = {k: v for k, v in s.meta.items() if k != "preprocessing"}
    return {"name": s.name, "split": s.split, "n": len(s), "sha256": s.fingerprint(),
            "preprocessing": s.meta.get("preprocessing", "none"), "meta": meta}


def _tag(model: HybridModel, index: int, taken: set[str]) -> str:
    tag = slugify(model.info.name or "model", "model")
    if tag in taken:
        tag = f"{tag}-{index}"
    taken.add(tag)
    return tag


def _score_sets(model: HybridModel, imageset: ImageSet, names: Sequence[str], cache: ForwardCache, timings: dict,
                *, sigma: float, seed: int, temperature: float, batch_size: int,
                progress: bool) -> dict[str, np.ndarray]:
    """Every score of ``names`` on ``imageset``: one (cached) forward pass + a gradient pass for gradnorm."""
    out: dict[str, np.ndarray] = {}
    if any(s in LOGIT_SCORES for s in names):
        with Timer() as t:
            fp = cache.get(model, imageset, sigma=sigma, seed=seed, batch_size=batch_size, progress=progress)
        timings["forward_s"] += t.seconds
        out.update({k: v.numpy() for k, v in logit_scores(fp, names, temperature).items()})
    if "gradnorm" in names:
        with Timer() as t:
            g = gradnorm_scores(model, imageset, sigma=sigma, seed=seed, batch_size=batch_size, progress=progress)
        timings["gradient_s"] += t.seconds
        out["gradnorm"] = g.numpy()
    return {s: out[s] for s in names}


def ood(checkpoints: str | Path | HybridModel | Sequence[str | Path | HybridModel], in_dataset: Optional[str] = None,
        out: Optional[str | Sequence[str]] = None, *, scores: Optional[str | Sequence[str]] = None,
        sigma: float = defaults.TEST_SIGMA, seed: int = defaults.SEED, temperature: float = defaults.OOD_TEMPERATURE,
        bootstrap: int = defaults.OOD_BOOTSTRAP, n: Optional[int] = None, batch_size: int = defaults.BATCH_SIZE,
        device: Any = defaults.DEVICE, data_dir: Any = None, download: bool = False, head: Optional[str] = None,
        cache: Optional[ForwardCache] = None, cache_dir: Any = None, out_dir: Any = None, save_raw: bool = False,
        figures: bool = True, progress: bool = True) -> OODResult:
    """OOD detection of each checkpoint: ``in_dataset`` test set (default: the checkpoint's dataset) against each
    ``out`` set or preset (default: the in-distribution's preset, ``digits`` -> noise, uniform, constant, interp,
    rotated; ``cifar10`` -> ``jem`` = svhn, cifar100, celeba, interp). Writes ``out_dir/results.json`` (figures
    and, with ``save_raw``, per-sample scores) when ``out_dir`` is given.
    """
    if isinstance(checkpoints, (str, Path, HybridModel)):
        checkpoints = [checkpoints]
    if isinstance(out, str):
        out = [out]
    if isinstance(scores, str):
        scores = [scores]
    if not checkpoints:
        raise JembenchError("no checkpoint given: pass one or more checkpoint files (or HybridModels)")
    names = parse_scores(scores)
    if not temperature > 0:
        raise JembenchError(f"--temperature must be > 0, got {temperature}")
    if sigma < 0 or bootstrap < 0 or batch_size < 1 or (n is not None and n < 1):
        raise JembenchError("need --sigma >= 0, --bootstrap >= 0, --batch-size >= 1 and --n >= 1")
    if save_raw and out_dir is None:
        raise JembenchError("save_raw needs out_dir: per-sample scores are written there")
    dev = resolve_device(device)
    models = load_models(list(checkpoints), dev, dataset=in_dataset, head=head)
    cache = cache if cache is not None else ForwardCache(cache_dir)
    out_path = Path(out_dir) if out_dir is not None else None
    evaluations, all_scores, all_timings, taken = [], [], [], set()
    for index, model in enumerate(models):
        timings = {"forward_s": 0.0, "gradient_s": 0.0, "metrics_s": 0.0, "figures_s": 0.0}
        with Timer() as total:
            ev, raw = _evaluate(model, _tag(model, index, taken), in_dataset, out, names, cache, timings,
                                sigma=sigma, seed=seed, temperature=temperature, bootstrap=bootstrap, n=n,
                                batch_size=batch_size, data_dir=data_dir, download=download, out_dir=out_path,
                                save_raw=save_raw, figures=figures, progress=progress)
        ev.wall_time_s = total.seconds
        timings["total_s"] = total.seconds
        evaluations.append(ev)
        all_scores.append(raw)
        all_timings.append(timings)
    config = {"in_dataset": in_dataset, "out": list(out or []), "scores": names, "sigma": sigma,
              "temperature": temperature, "bootstrap": bootstrap, "n": n, "batch_size": batch_size, "head": head,
              "save_raw": save_raw}
    doc = finish(out_path, evaluations, device=dev, seed=seed, config=config)
    return OODResult(evaluations, doc, all_scores, all_timings, out_path)


def _evaluate(model: HybridModel, tag: str, in_dataset: Optional[str], out: Optional[Sequence[str]],
              names: list[str], cache: ForwardCache, timings: dict, *, sigma: float, seed: int, temperature: float,
              bootstrap: int, n: Optional[int], batch_size: int, data_dir: Any, download: bool,
              out_dir: Optional[Path], save_raw: bool, figures: bool, progress: bool) -> tuple[Evaluation, dict]:
    in_set = load_eval_set(model, in_dataset, "test", data_dir=data_dir, download=download, n=n, need_labels=False)
    out_sets = _load_out_sets(expand_out(out, in_set.name), in_set, model, data_dir=data_dir, download=download,
                              seed=seed, n=n)
    kw = dict(sigma=sigma, seed=seed, temperature=temperature, batch_size=batch_size, progress=progress)
    score_in = _score_sets(model, in_set, names, cache, timings, **kw)
    score_out = {o: _score_sets(model, s, names, cache, timings, **kw) for o, s in out_sets.items()}

    warnings, metrics, intervals, rows, finite = [], {}, {}, [], {}
    with Timer() as t:
        for s in names:
            for o in out_sets:
                a, b, bad = finite[s, o] = sanitize(score_in[s], score_out[o][s])
                if bad:
                    warnings.append(f"{s} on {in_set.name} vs {o}: {bad} non-finite scores ranked as most OOD "
                                    "(NaN, -inf) or most in-distribution (+inf)")
                m = ood_metrics(a, b, bootstrap=bootstrap, seed=derive_seed(seed, "ood-bootstrap", s, o),
                                level=defaults.OOD_CI_LEVEL)
                rows.append({"score": s, "out": o, **m})
                metrics.update({f"{k}/{s}/{o}": m[k] for k in METRICS})
                if bootstrap:
                    intervals[f"auroc/{s}/{o}"] = [m["auroc_lo"], m["auroc_hi"]]
    timings["metrics_s"] += t.seconds
    for o, s in out_sets.items():
        if s.fingerprint() == in_set.fingerprint():
            warnings.append(f"OOD set {o!r} holds exactly the in-distribution images: its AUROC is 0.5 by design")

    artifacts: dict[str, str] = {}
    if out_dir is not None and figures:
        with Timer() as t:
            for s in names:
                outs = {o: score_out[o][s] for o in out_sets}
                auroc = {o: metrics[f"auroc/{s}/{o}"] for o in out_sets}
                for label, fig in ((f"hist/{s}", score_histograms(s, in_set.name, score_in[s], outs)),
                                   (f"roc/{s}", roc_curves(s, {o: finite[s, o][:2] for o in out_sets}, auroc))):
                    rel = Path("figures") / "ood" / tag / f"{label.replace('/', '_')}.png"
                    atomic_savefig(fig, out_dir / rel, **SAVE_KW)
                    close(fig)
                    artifacts[label] = rel.as_posix()
        timings["figures_s"] += t.seconds
    if save_raw and out_dir is not None:
        rel = Path("raw") / f"ood_{tag}.npz"
        arrays = {f"{s}.in": score_in[s] for s in names}
        arrays.update({f"{s}.out{j}": score_out[o][s] for j, o in enumerate(out_sets) for s in names})
        atomic_savez(out_dir / rel, out_names=np.array(list(out_sets)), scores=np.array(names),
                     in_labels=in_set.labels if in_set.labels is not None else np.zeros(0, dtype=np.int64), **arrays)
        artifacts["raw_scores"] = rel.as_posix()

    protocol = {
        "in_dataset": in_set.name, "in_split": in_set.split, "n_in": len(in_set), "in_sha256": in_set.fingerprint(),
        "in_preprocessing": in_set.meta.get("preprocessing", "none"), "n_limit": n,
        "out_sets": [_set_protocol(s) for s in out_sets.values()],
        "scores": names, "score_convention": CONVENTION, "temperature": temperature, "gradnorm": GRADNORM_RULE,
        "head": model.info.head, "positive_class": "in-distribution",
        "test_sigma": float(sigma), "noise_seed": int(seed), "noise_rule": NOISE_RULE,
        "aupr_method": AUPR_METHOD, "fpr_conventions": FPR_CONVENTIONS, "tpr_level": 0.95,
        "detection_error": "min over thresholds of 0.5 * (1 - TPR) + 0.5 * FPR",
        "bootstrap": {"resamples": bootstrap, "level": defaults.OOD_CI_LEVEL, "method": BOOTSTRAP_METHOD,
                      "seed": int(seed), "seed_rule": "derive_seed(seed, 'ood-bootstrap', score, out set)"},
    }
    ev = Evaluation("ood", model.info.to_dict(), protocol, metrics=metrics, intervals=intervals, rows=rows,
                    warnings=warnings, artifacts=artifacts)
    return ev, {"in": score_in, "out": score_out}
