"""``run_all``: every evaluator on every checkpoint, one shared forward cache, one results.json, one report.

Layout of ``out_dir``::

    results.json              every Evaluation, provenance (versions, seed, preset, wall time per evaluator)
    index.html                the self-contained report (jembench.reporting)
    tables/<table>.csv        one CSV per comparison table
    <evaluator>/<checkpoint>/ what each evaluator wrote: figures, raw/*.npz per-sample arrays, its results.json
    .parts/<key>.json         finished (evaluator, checkpoint) steps, keyed by configuration and checkpoint hash

An interrupted run resumes: a step whose part file exists (and whose artifacts are still there) is not run
again. A step that raises is recorded as a failed Evaluation (shown in the report with its error) and the
others go on; :attr:`RunAllResult.failed` names them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .. import __version__, defaults
from ..errors import JembenchError
from ..forward import ForwardCache, model_fingerprint
from ..models import HybridModel
from ..presets import EVALUATORS, Preset, get_preset
from ..reporting import Run, build_report
from ..reporting.tables import checkpoint_label
from ..results import (Evaluation, EvaluatorResult, atomic_write_json, atomic_write_text, provenance,
                       results_document, slugify, to_jsonable, write_results)
from ..runtime import resolve_device
from .common import load_models

PARTS_DIR = ".parts"
SUMMARY_METRICS = ("accuracy", "ece")


@dataclass
class RunAllResult(EvaluatorResult):
    """:class:`EvaluatorResult` of every step, with what run-all did: failures, resumed steps, wall times."""

    out_dir: Optional[Path] = None
    failed: list[str] = field(default_factory=list)  # "evaluator (checkpoint)" of each failed step
    resumed: list[str] = field(default_factory=list)  # steps read back from .parts instead of run
    steps: list[dict[str, Any]] = field(default_factory=list)  # step, checkpoint, status, seconds, resumed
    errors: dict[str, str] = field(default_factory=dict)  # failed step -> its one-line error

    @property
    def html(self) -> Optional[Path]:
        return self.out_dir / "index.html" if self.out_dir else None

    def table(self) -> str:
        """One line per checkpoint: headline numbers and each step's status and wall time."""
        by_ckpt: dict[str, dict[str, str]] = {}
        for e in self.evaluations:
            if e.evaluator in ("clf", "calib"):
                by_ckpt.setdefault(checkpoint_label(e.checkpoint), {}).update(
                    {m: f"{e.metrics[m]:.4f}" for m in SUMMARY_METRICS if e.metrics.get(m) is not None})
        names: list[str] = []
        for s in self.steps:
            names += [s["step"]] if s["step"] not in names else []
            when = " (resumed)" if s["resumed"] else f" {s['seconds']:.0f}s"
            by_ckpt.setdefault(s["checkpoint"], {})[s["step"]] = ("ok" if s["status"] == "ok" else "FAILED") + when
        columns = ["checkpoint", *SUMMARY_METRICS, *names]
        rows = [[name] + [row.get(c, "-") for c in columns[1:]] for name, row in by_ckpt.items()]
        widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [columns, *rows])


# --- how run-all calls each evaluator: the preset's fields as that evaluator's keyword arguments ----------
def _clf_kwargs(p: Preset) -> dict[str, Any]:
    return {"dataset": p.dataset, "n": p.n, "sigma": p.sigma, "save_raw": True}


def _calib_kwargs(p: Preset) -> dict[str, Any]:
    return {**_clf_kwargs(p), "bins": p.calib.bins, "bootstrap": p.calib.bootstrap}


def _ood_kwargs(p: Preset) -> dict[str, Any]:
    return {"in_dataset": p.dataset, "n": p.n, "sigma": p.sigma, "out": list(p.ood.out) or None,
            "scores": list(p.ood.scores) or None, "bootstrap": p.ood.bootstrap, "save_raw": True}


def _robust_kwargs(p: Preset) -> list[tuple[str, dict[str, Any]]]:
    """One step per threat model (the evaluator attacks one norm per call)."""
    r = p.robust
    base = {"dataset": p.dataset, "n": r.n, "attacks": list(r.attacks), "steps": r.steps, "restarts": r.restarts,
            "purify_steps": list(r.purify_steps), "eot": r.eot, "eval_purifications": r.eval_purifications,
            "purify_copies": r.purify_copies, "full_grad_max_k": r.full_grad_max_k, "save_raw": True}
    eps = {"linf": r.eps_linf, "l2": r.eps_l2}
    return [(norm, {**base, "norm": norm, "eps": list(eps[norm])}) for norm in r.norms]


def _gen_kwargs(p: Preset) -> dict[str, Any]:
    g = p.gen
    kwargs = {"dataset": p.dataset, "n": g.n, "protocol": list(g.protocols), "metrics": list(g.metrics),
              "reference": g.reference, "feature_extractor": g.feature_extractor, "save_raw": True,
              "fid_weights": g.fid_weights, "offline": g.offline}
    kwargs.update({k: v for k, v in (("steps", g.steps), ("pcd_rounds", g.pcd_rounds)) if v is not None})
    return kwargs


def _single(kwargs: Callable[[Preset], dict[str, Any]]) -> Callable[[Preset], list[tuple[str, dict[str, Any]]]]:
    return lambda p: [("", kwargs(p))]


# evaluator -> its steps for a preset: (variant label, keyword arguments); most evaluators have one step
STEPS: dict[str, Callable[[Preset], list[tuple[str, dict[str, Any]]]]] = {
    "clf": _single(_clf_kwargs), "calib": _single(_calib_kwargs), "ood": _single(_ood_kwargs),
    "robust": _robust_kwargs, "gen": _single(_gen_kwargs)}
TAKES_CACHE = ("clf", "calib", "ood", "robust")  # evaluators that accept the shared forward cache


def evaluator_function(name: str) -> Callable[..., Any]:
    """``jembench.evaluators.<name>.<name>``, looked up at call time."""
    return getattr(importlib.import_module(f"{__package__}.{name}"), name)


def checkpoint_hash(model: HybridModel) -> str:
    """The file's sha256 when the model came from a file, else a hash of its parameters and head."""
    return model.info.sha256 or f"params:{model_fingerprint(model)}"


def step_key(evaluator: str, kwargs: dict[str, Any], ckpt_hash: str, *, seed: int, device: str, batch_size: int,
             extra: dict[str, Any]) -> str:
    """Hash of everything that decides a step's numbers: evaluator, its settings, checkpoint, seed, device."""
    blob = json.dumps(to_jsonable([evaluator, kwargs, ckpt_hash, seed, device, batch_size, extra, __version__]),
                      sort_keys=True)
    return f"{evaluator}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def run_all(checkpoints: str | Path | HybridModel | Sequence[str | Path | HybridModel], *,
            preset: str | Preset = "quick", overrides: Optional[dict[str, Any]] = None,
            out_dir: Optional[str | Path] = None, device: Any = defaults.DEVICE, seed: int = defaults.SEED,
            batch_size: int = defaults.BATCH_SIZE, data_dir: Any = None, download: bool = False,
            head: Optional[str] = None, cache_dir: Any = None, resume: bool = True, html: bool = True,
            progress: bool = True) -> RunAllResult:
    """Accuracy, calibration, OOD, robustness and generation for each checkpoint, with one shared forward cache.

    ``preset`` is ``"quick"``, ``"paper"`` or a :class:`~jembench.presets.Preset`; ``overrides`` set its fields
    (``{"sigma": 0.03, "robust.eps_linf": "0,8/255"}``). With ``out_dir``: results.json, one CSV per comparison
    table, each evaluator's figures and per-sample arrays, and index.html; finished steps are kept in
    ``out_dir/.parts`` so an interrupted run resumes where it stopped (``resume=False`` recomputes everything).
    """
    cfg = get_preset(preset).override(overrides or {})
    if isinstance(checkpoints, (str, Path, HybridModel)):
        checkpoints = [checkpoints]
    if not checkpoints:
        raise JembenchError("no checkpoint given: pass one or more checkpoint files")
    dev = resolve_device(device)
    models = load_models(checkpoints, dev, head=head)
    out = Path(out_dir) if out_dir is not None else None
    cache = ForwardCache(cache_dir)
    common = {"seed": seed, "device": str(dev), "batch_size": batch_size, "data_dir": data_dir, "download": download}
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    evaluations: list[Evaluation] = []
    failed, resumed, wall, records, errors = [], [], {}, [], {}
    slugs = _checkpoint_slugs(models)
    steps = [(name, variant, kwargs, model, slug) for model, slug in zip(models, slugs)
             for name in EVALUATORS if name in cfg.evaluators for variant, kwargs in STEPS[name](cfg)]
    started = time.perf_counter()
    for i, (name, variant, kwargs, model, slug) in enumerate(steps, 1):
        step = f"{name}-{variant}" if variant else name
        label = f"{step} ({checkpoint_label(model.info.to_dict())})"
        key = step_key(step, kwargs, checkpoint_hash(model), seed=seed, device=str(dev), batch_size=batch_size,
                       extra={"head": head, "dataset_dir": str(data_dir) if data_dir else None})
        part = out / PARTS_DIR / f"{key}.json" if out is not None else None
        done = _read_part(part, out) if (part is not None and resume) else None
        if done is not None:
            evs, seconds = done
            resumed.append(label)
            log(f"[{i}/{len(steps)}] {label}: done earlier, resumed from {part.name}")
        else:
            log(f"[{i}/{len(steps)}] {label} ...")
            evs, seconds = _run_step(name, model, kwargs, cache if name in TAKES_CACHE else None, common,
                                     out / step / slug if out is not None else None, out)
            if all(e.status == "ok" for e in evs) and part is not None:
                atomic_write_json(part, {"key": key, "evaluator": name, "checkpoint_sha256": checkpoint_hash(model),
                                         "config": kwargs, "wall_time_s": seconds,
                                         "evaluations": [e.to_dict() for e in evs]})
            log(f"[{i}/{len(steps)}] {label}: {'ok' if all(e.status == 'ok' for e in evs) else 'FAILED'} "
                f"in {seconds:.1f} s")
        if any(e.status != "ok" for e in evs):
            failed.append(label)
            errors[label] = "; ".join(e.error or "failed" for e in evs if e.status != "ok")
        for e in evs:
            e.checkpoint["sha256"] = e.checkpoint.get("sha256") or checkpoint_hash(model)
        wall[f"{step}/{slug}"] = round(seconds, 3)
        records.append({"step": step, "checkpoint": checkpoint_label(model.info.to_dict()), "seconds": seconds,
                        "status": "ok" if all(e.status == "ok" for e in evs) else "failed",
                        "resumed": done is not None})
        evaluations += evs
    wall["total"] = round(sum(r["seconds"] for r in records), 3)  # steps resumed from earlier runs included
    wall["this_run"] = round(time.perf_counter() - started, 3)

    config = {"preset": cfg.to_dict(), "overrides": dict(overrides or {}), **common, "head": head,
              "cache_dir": cache_dir, "evaluator_kwargs": {n: dict(STEPS[n](cfg)) for n in cfg.evaluators}}
    prov = provenance(device=dev, seed=seed, config=config)
    prov["wall_time_s"] = wall
    prov["forward_model_calls"] = cache.model_calls
    prov["resumed"] = resumed
    if out is not None:
        write_results(out, evaluations, prov)
        if html:
            run = Run(out.name or "run-all", out, prov, evaluations, out / "results.json")
            build_report([run], out / "index.html", csv_dir=out / "tables",
                         title=f"jembench run-all ({cfg.name} preset)")
    return RunAllResult(evaluations, results_document(evaluations, prov), out, failed, resumed, records, errors)


def _run_step(name: str, model: HybridModel, kwargs: dict[str, Any], cache: Optional[ForwardCache],
              common: dict[str, Any], step_dir: Optional[Path], out: Optional[Path]) -> tuple[list[Evaluation], float]:
    """Run one evaluator on one checkpoint; a failure becomes a failed Evaluation (KeyboardInterrupt propagates)."""
    start = time.perf_counter()
    try:
        fn = evaluator_function(name)
        extra = {"cache": cache} if cache is not None else {}
        result = fn([model], **kwargs, **common, **extra, out_dir=step_dir)
        evs = [Evaluation.from_dict(e.to_dict()) for e in result.evaluations]
        seconds = time.perf_counter() - start
        for e in evs:
            if step_dir is not None and out is not None:
                prefix = step_dir.relative_to(out)
                e.artifacts = {k: (v if Path(v).is_absolute() else str(prefix / v)) for k, v in e.artifacts.items()}
            if e.wall_time_s is None or len(evs) == 1:  # the step's wall time: loading data, forward pass, writing
                e.wall_time_s = seconds / len(evs)
        return evs, seconds
    except Exception as exc:  # noqa: BLE001 - one failed evaluator must not stop the others
        seconds = time.perf_counter() - start
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error = f"{type(exc).__name__}: {message}" if not isinstance(exc, JembenchError) else message
        artifacts = {}
        if step_dir is not None and out is not None:
            log_path = step_dir / "error.txt"
            atomic_write_text(log_path, traceback.format_exc())
            artifacts["traceback"] = str(log_path.relative_to(out))
        ev = Evaluation(name, model.info.to_dict(), {"run_all_kwargs": kwargs}, status="failed", error=error,
                        artifacts=artifacts, wall_time_s=seconds)
        return [ev], seconds


def _read_part(part: Path, out: Path) -> Optional[tuple[list[Evaluation], float]]:
    """A finished step's evaluations, or None when absent, unreadable or its artifacts are gone."""
    if not part.is_file():
        return None
    try:
        doc = json.loads(part.read_text())
        evs = [Evaluation.from_dict(e) for e in doc["evaluations"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(not (out / p).exists() for e in evs for p in e.artifacts.values() if not Path(p).is_absolute()):
        return None
    return evs, float(doc.get("wall_time_s") or 0.0)


def _checkpoint_slugs(models: list[HybridModel]) -> list[str]:
    """Folder names per checkpoint: ``<index>-<name>`` made file-name safe."""
    return [f"{i}-{slugify(checkpoint_label(m.info.to_dict()))[:60]}" for i, m in enumerate(models)]
