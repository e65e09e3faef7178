"""``run_all``: every evaluator on every checkpoint, one shared forward cache, one results.json, one report.

Layout of ``out_dir``::

    results.json              every Evaluation, provenance (versions, seed, preset, wall time per evaluator)
    index.html                the self-contained report (jembench.reporting)
    tables/<table>.csv        one CSV per comparison table
    <step>/<checkpoint>-<hash>/   what each step wrote (figures, raw/*.npz), <hash> = its configuration + checkpoint
    .parts/<key>.json         finished (evaluator, checkpoint) steps, keyed by configuration and checkpoint hash,
                              with the sha256 of every artifact they link
    .jembench.lock            held while a run writes here (:mod:`jembench.outdir`)

An interrupted run resumes: a step whose part file exists and whose artifacts still have the hashes it recorded
is not run again (else it is recomputed). A step's artifacts live in a folder of its own configuration, so runs
with other settings never overwrite what an earlier part file links. A step that raises is recorded as a failed
Evaluation (shown in the report with its error) and the others go on; :attr:`RunAllResult.failed` names them.
Steps, their order, their settings sections and which share the forward cache come from the evaluator registry;
each step's results are written once (its part file), and results.json once at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .. import background, defaults, distributed
from ..cost import total
from ..errors import JembenchError, PreflightError
from ..forward import ForwardCache, model_fingerprint
from ..io import WriteError, atomic_write_json, atomic_write_text, checkpoint_slugs, to_jsonable
from ..models import HybridModel, file_sha256
from ..outdir import holds_out_dir
from ..presets import Preset, get_preset
from ..progress import labelled
from ..reporting import Run, compare_runs
from ..reporting.comparisons import names_checkpoint
from ..reporting.tables import checkpoint_label, unique_checkpoint_labels
from ..results import Evaluation, EvaluatorResult, provenance, results_document, write_results
from ..runtime import resolve_device
from ..settings import Settings, Spelling
from ..version import __version__
from .base import Context, Evaluator, SharedSettings, no_cost, record_precision
from . import calib, clf
from .calib import ECE
from .clf import ACCURACY
from .common import load_for_preflight
from .registry import REGISTRY

log = logging.getLogger("jembench")
PARTS_DIR = ".parts"
ERROR_FILE = "error.txt"
SUMMARY = ((clf.EVALUATOR.name, ACCURACY), (calib.EVALUATOR.name, ECE))  # (evaluator, metric) terminal columns
UNDECISIVE = ("cache_dir", "download", "device")  # shared fields that never change a number (device: in the key)


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
        labels = self.labels()
        for e in self.evaluations:
            row = by_ckpt.setdefault(labels[_identity(e.checkpoint)], {})
            row.update({m: f"{e.metrics[m]:.4f}" for name, m in SUMMARY if e.evaluator == name and e.metrics.get(m)
                        is not None})
        names: list[str] = []
        for s in self.steps:
            names += [s["step"]] if s["step"] not in names else []
            when = " (resumed)" if s["resumed"] else f" {s['seconds']:.0f}s"
            by_ckpt.setdefault(s["checkpoint"], {})[s["step"]] = ("ok" if s["status"] == "ok" else "FAILED") + when
        columns = ["checkpoint", *(m for _, m in SUMMARY), *names]
        rows = [[name] + [row.get(c, "-") for c in columns[1:]] for name, row in by_ckpt.items()]
        widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [columns, *rows])

    def labels(self) -> dict[tuple[str, str], str]:
        """(name, sha256) of each checkpoint -> its unique label, as the report's rows are labelled."""
        seen = list({_identity(e.checkpoint): e.checkpoint for e in self.evaluations}.items())
        return dict(zip((k for k, _ in seen), unique_checkpoint_labels([c for _, c in seen])))


def _identity(checkpoint: dict[str, Any]) -> tuple[str, str]:
    return checkpoint_label(checkpoint), str(checkpoint.get("sha256") or "")


def checkpoint_hash(model: HybridModel) -> str:
    """The file's sha256 when the model came from a file, else a hash of its parameters and head."""
    return model.info.sha256 or f"params:{model_fingerprint(model)}"


def step_key(step: str, spec: Evaluator, settings: Settings, shared: SharedSettings, ckpt_hash: str,
             device: str) -> str:
    """Hash of everything that decides a step's numbers: the step, its settings, the shared settings the
    evaluator reads, checkpoint, device and jembench version."""
    decisive = {k: v for k, v in shared.to_dict().items() if k in spec.shared and k not in UNDECISIVE}
    blob = json.dumps(to_jsonable([step, settings.to_dict(), decisive, ckpt_hash, device, __version__]),
                      sort_keys=True)
    return f"{spec.name}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


@holds_out_dir
def run_all(checkpoints: str | Path | HybridModel | Sequence[str | Path | HybridModel], *,
            preset: str | Preset = "quick", overrides: Optional[dict[str, Any]] = None,
            out_dir: Optional[str | Path] = None, device: Any = defaults.DEVICE, seed: int = defaults.SEED,
            batch_size: Optional[int] = None, precision: str = "fp32", data_dir: Any = None,
            download: bool = False, head: Optional[str] = None, norm: Optional[str] = None, cache_dir: Any = None,
            resume: bool = True, html: bool = True, progress: bool = True, baseline: Optional[str] = None,
            plan: bool = False) -> Any:
    """Accuracy, calibration, OOD, robustness and generation for each checkpoint, with one shared forward cache.

    ``preset`` is ``"quick"``, ``"paper"`` or a :class:`~jembench.presets.Preset`; ``overrides`` set its fields
    (``{"sigma": 0.03, "robust.eps_linf": "0,8/255"}``). Every problem that needs no model pass is found first
    and raised together (:func:`prepare`). With ``out_dir``: results.json, one CSV per comparison table, each
    step's figures and per-sample arrays, and index.html; finished steps are kept in ``out_dir/.parts`` so an
    interrupted run resumes where it stopped (``resume=False`` recomputes everything). One run at a time writes
    ``out_dir`` (a second one exits 2 naming the holder, or with ``wait=True`` waits); it is checked writable
    before anything is computed. ``baseline`` names the checkpoint the others are compared against (default: the
    one plain classifier among them, if any); the paired comparisons go to results.json. ``plan=True`` runs
    nothing and writes nothing: it returns the :class:`~jembench.evaluators.plan.Plan` of the run.
    """
    cfg, shared, models = prepare(checkpoints, preset, overrides, dict(
        seed=seed, device=device, batch_size=batch_size, data_dir=data_dir, download=download, head=head, norm=norm,
        cache_dir=cache_dir, precision=precision), baseline)
    dev = distributed.local_device(resolve_device(shared.device))
    out = Path(out_dir) if out_dir is not None else None
    writes = out if distributed.is_main() else None  # under torchrun rank 0 alone writes files and shows progress
    progress = progress and distributed.is_main()
    cache = ForwardCache(cache_dir)
    names = [m.info.name for m in models]
    labels = unique_checkpoint_labels([{**m.info.to_dict(), "sha256": checkpoint_hash(m)} for m in models])
    steps = [Step(spec, variant, settings, model, folder, slug, label) for model, folder, slug, label in
             zip(models, checkpoint_slugs(names, numbered=True), checkpoint_slugs(names), labels)
             for spec in REGISTRY.values() if spec.name in cfg.evaluators
             for variant, settings in spec.steps(cfg.settings(spec.name))]
    if plan:  # steps an earlier run finished (resume) cost nothing
        from .plan import make_plan

        done = {i for i, s in enumerate(steps) if resume and out is not None
                and _read_part(out / PARTS_DIR / f"{_key(s, shared, dev)}.json", out) is not None}
        return make_plan([(s.name, s.spec, s.settings, s.model) for s in steps], shared, done)
    started = time.perf_counter()
    if writes is not None:
        background.start()  # the figure worker imports matplotlib while the first steps run
    evaluations, resumed, records, errors, wall = _run_steps(steps, shared, dev, cache, writes, resume, progress)
    wall["total"] = round(sum(r["seconds"] for r in records), 3)  # steps resumed from earlier runs included
    wall["this_run"] = round(time.perf_counter() - started, 3)
    config = {"preset": cfg.to_dict(), "overrides": dict(overrides or {}), "shared": shared.to_dict(),
              "steps": {s.name: s.settings.to_dict() for s in steps}}
    prov = provenance(device=dev, seed=shared.seed, config=config)
    prov.update(wall_time_s=wall, forward_model_calls=cache.model_calls, resumed=resumed)
    comparisons = None
    if writes is not None:
        run = Run(out.name or "run-all", out, prov, evaluations, out / "results.json")
        comparisons = compare_runs([run], baseline=baseline)
        write_results(out, evaluations, prov, [c.to_dict() for c in comparisons])
        if html:
            from .report import build

            build([run], out / "index.html", csv_dir=out / "tables", title=f"jembench run-all ({cfg.name} preset)",
                  baseline=baseline, comparisons=comparisons)
    doc = results_document(evaluations, prov, [c.to_dict() for c in comparisons] if comparisons is not None else None)
    return RunAllResult(evaluations, doc, out, list(errors), resumed, records, errors)


def _run_steps(steps: list["Step"], shared: SharedSettings, dev: Any, cache: ForwardCache, out: Optional[Path],
               resume: bool, progress: bool) -> tuple[list[Evaluation], list[str], list[dict[str, Any]],
                                                     dict[str, str], dict[str, float]]:
    """Run (or resume) every step in order: ``(evaluations, resumed steps, step records, errors, wall times)``.
    Figures and part files are written through the figure queue while later steps run; all are on disk when this
    returns, and also when it raises (an interrupted run resumes from every step it finished)."""
    evaluations: list[Evaluation] = []
    resumed, records, errors, wall = [], [], {}, {}
    try:
        for i, step in enumerate(steps, 1):
            say = (lambda msg, *args: log.info(f"[%d/%d] {msg}", i, len(steps), *args)) if progress else _quiet
            ctx = Context(dev, cache, save_raw=True, progress=progress, label=f"[{i}/{len(steps)}] {step.label}")
            evs, seconds, was_resumed = _resume_or_run(step, shared, ctx, out, resume, say)
            ok = all(e.status == "ok" for e in evs)
            if not ok:
                errors[step.label] = "; ".join(e.error or "failed" for e in evs if e.status != "ok")
            resumed += [step.label] if was_resumed else []
            for e in evs:
                e.checkpoint["sha256"] = e.checkpoint.get("sha256") or checkpoint_hash(step.model)
            wall[f"{step.name}/{step.folder}"] = round(seconds, 3)
            records.append({"step": step.name, "checkpoint": step.checkpoint,
                            "seconds": seconds, "status": "ok" if ok else "failed", "resumed": was_resumed})
            evaluations += evs
    finally:
        background.wait()
    return evaluations, resumed, records, errors, wall


def prepare(checkpoints: Any, preset: str | Preset, overrides: Optional[dict[str, Any]], values: dict[str, Any],
            baseline: Optional[str] = None) -> tuple[Preset, SharedSettings, list[HybridModel]]:
    """The preflight of a run: the preset with its overrides, the shared settings, every checkpoint loaded, then
    each selected evaluator's :attr:`~Evaluator.preflight` on every checkpoint. Every problem is raised together
    (:class:`PreflightError`, options named as ``--set`` spells them) before any model pass."""
    problems: list[Any] = []  # one-line texts and errors
    cfg = get_preset(preset).override(overrides or {}, problems=problems)
    shared: Optional[SharedSettings] = None
    try:
        shared = SharedSettings.build({"dataset": cfg.dataset, "n": cfg.n, "sigma": cfg.sigma, **values})
    except JembenchError as exc:
        problems.append(exc)
    models = load_for_preflight(checkpoints, shared, problems)
    if baseline and models and not any(names_checkpoint(baseline, m.info.to_dict(), m.info.name) for m in models):
        problems.append(f"--baseline {baseline!r} is none of the checkpoints: {', '.join(m.info.name for m in models)}")
    if shared is not None and models:
        for spec in REGISTRY.values():
            if spec.name in cfg.evaluators:
                for _, settings in spec.steps(cfg.settings(spec.name)):
                    problems += spec.preflight(models, settings, shared, Spelling(spec.name))
    if problems:
        raise PreflightError.of(problems)
    assert shared is not None
    return cfg, distributed.from_main(shared.resolved(models)), models  # auto batch size, after the checks; rank 0s


@dataclass
class Step:
    """One (evaluator, variant, checkpoint) of a run; ``folder`` is the checkpoint's numbered slug (its step's
    output folder), ``slug`` the name its files carry inside it."""

    spec: Evaluator
    variant: str
    settings: Settings
    model: HybridModel
    folder: str
    slug: str
    checkpoint: str  # the checkpoint's unique label (names shared by several checkpoints get a short sha256)

    @property
    def name(self) -> str:
        return f"{self.spec.name}-{self.variant}" if self.variant else self.spec.name

    @property
    def label(self) -> str:
        return f"{self.name} ({self.checkpoint})"


def _key(step: Step, shared: SharedSettings, device: Any) -> str:
    return step_key(step.name, step.spec, step.settings, shared, checkpoint_hash(step.model), str(device))


def _quiet(msg: str, *args: Any) -> None:
    pass


def _resume_or_run(step: Step, shared: SharedSettings, ctx: Context, out: Optional[Path], resume: bool,
                   say: Callable[..., None]) -> tuple[list[Evaluation], float, bool]:
    """A step's evaluations and wall time: read back from its part file, or run (and the part file written once
    when every evaluation is ok). ``ctx`` is completed with the step's folder, cache and file slug: the folder is
    keyed by the step's configuration and checkpoint hash, so no other configuration writes there."""
    key = _key(step, shared, ctx.device)
    part = out / PARTS_DIR / f"{key}.json" if out is not None else None
    done = distributed.from_main(_read_part(part, out) if (part is not None and resume) else None)  # rank 0 decides
    if done is not None:
        say("%s: done earlier, resumed from %s", step.label, part.name if part is not None else "rank 0's part")
        return (*done, True)
    say("%s ...", step.label)
    ctx.out_dir = out / step.name / f"{step.folder}-{key.rsplit('-', 1)[-1][:8]}" if out is not None else None
    ctx.cache = ctx.cache if step.spec.uses_forward_cache else None
    ctx.slugs[id(step.model)] = step.slug
    if ctx.out_dir is not None:
        (ctx.out_dir / ERROR_FILE).unlink(missing_ok=True)  # a failure of an earlier try of this very step
    evs, seconds = _run_step(step.spec, step.model, step.settings, shared, ctx, out)
    ok = all(e.status == "ok" for e in evs)
    if ok and part is not None and out is not None:  # after the step's figures (one FIFO thread), off the critical path
        doc = {"key": key, "evaluator": step.spec.name, "settings": step.settings.to_dict(),
               "checkpoint_sha256": checkpoint_hash(step.model), "wall_time_s": seconds,
               "evaluations": [e.to_dict() for e in evs]}
        background.submit(f"resume file {part.name}", _write_part, part, doc, out)
    say("%s: %s in %.1f s", step.label, "ok" if ok else "FAILED", seconds)
    return evs, seconds, False


def _run_step(spec: Evaluator, model: HybridModel, settings: Settings, shared: SharedSettings, ctx: Context,
              out: Optional[Path]) -> tuple[list[Evaluation], float]:
    """Run one evaluator on one checkpoint; a failure becomes a failed Evaluation (KeyboardInterrupt and a
    :class:`WriteError`, which would fail every later step too, propagate). Artifact paths are made relative to
    ``out``."""
    start = time.perf_counter()
    try:
        with labelled(ctx.label):
            evs = record_precision(spec.run([model], settings, shared, ctx), shared.precision)
        seconds = time.perf_counter() - start
        passes = total(spec.cost(settings, shared, model)) if spec.cost is not no_cost else None
        for e in evs:
            if passes is not None:
                e.provenance.setdefault("passes", passes)
            if ctx.out_dir is not None and out is not None:
                prefix = ctx.out_dir.relative_to(out)
                e.artifacts = {k: (v if Path(v).is_absolute() else str(prefix / v)) for k, v in e.artifacts.items()}
            if e.wall_time_s is None or len(evs) == 1:  # the step's wall time: loading data, forward pass, writing
                e.wall_time_s = seconds / len(evs)
        return evs, seconds
    except WriteError:
        raise
    except Exception as exc:  # noqa: BLE001 - one failed evaluator must not stop the others
        seconds = time.perf_counter() - start
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error = f"{type(exc).__name__}: {message}" if not isinstance(exc, JembenchError) else message
        artifacts = {}
        if ctx.out_dir is not None and out is not None:
            log_path = ctx.out_dir / ERROR_FILE
            try:
                atomic_write_text(log_path, traceback.format_exc())
                artifacts["traceback"] = str(log_path.relative_to(out))
            except WriteError as werr:  # the failure is still recorded; only its traceback file is lost
                log.warning("%s", werr)
        ev = Evaluation(spec.name, model.info.to_dict(), {"settings": settings.to_dict()}, status="failed",
                        error=error, artifacts=artifacts, wall_time_s=seconds)
        return [ev], seconds


def _write_part(part: Path, doc: dict[str, Any], out: Path) -> None:
    """Write a finished step's part file with the sha256 of every file its evaluations link (paths relative to
    ``out``). Runs from the figure queue after the step's figures, so the hashes are those of the files on disk."""
    paths = sorted({p for e in doc["evaluations"] for p in e["artifacts"].values() if not Path(p).is_absolute()})
    hashes = {p: file_sha256(out / p) for p in paths if (out / p).is_file()}
    atomic_write_json(part, {**doc, "artifacts": hashes})


def _read_part(part: Path, out: Path) -> Optional[tuple[list[Evaluation], float]]:
    """A finished step's evaluations, or None (recompute) when absent, unreadable, or an artifact it links is gone
    or no longer has the sha256 the part file recorded."""
    if not part.is_file():
        return None
    try:
        doc = json.loads(part.read_text())
        evs = [Evaluation.from_dict(e) for e in doc["evaluations"]]
        hashes = dict(doc["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    linked = {p for e in evs for p in e.artifacts.values() if not Path(p).is_absolute()}
    if linked - set(hashes) or any(not (out / p).is_file() or file_sha256(out / p) != h for p, h in hashes.items()):
        log.warning("%s: the files it links changed or are gone; recomputing that step", part.name)
        return None
    return evs, float(doc.get("wall_time_s") or 0.0)
