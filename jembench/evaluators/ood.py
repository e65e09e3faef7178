"""OOD detection: how well each score separates the in-distribution test set from each OOD set.

``ood(checkpoints, in_dataset, out)`` mirrors ``jembench ood``. Scores and conventions: :mod:`jembench.scores`
(higher = more in-distribution); metrics: :mod:`jembench.metrics.ood` (in-distribution = positive class).
Logit scores of a set come from ONE forward pass (the shared :class:`~jembench.forward.ForwardCache`, so
``run-all`` reuses the accuracy pass); ``gradnorm`` adds one input-gradient pass per set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from .. import background
from ..cost import Cost, set_size
from ..io import atomic_savez
from ..preflight import eval_set_problems, ood_set_problems
from ..progress import track
from ..results import Evaluation, EvaluatorResult
from ..runtime import derive_seed
from ..scores import CONVENTION, SCORES, parse_scores
from ..settings import Settings, Spelling, option
from .base import Context, Evaluator, SharedSettings
from .clf import SHARED
from .common import Timer, default_dataset, eval_set_size, forward_key, load_eval_set

if TYPE_CHECKING:  # torch-backed: imported where used, so the settings and the registry entry stay light
    import numpy as np

    from ..data.imageset import ImageSet
    from ..forward import ForwardCache
    from ..models import HybridModel

NAME = "ood"
PRESETS = {  # --out NAME expands to these OOD sets
    "jem": ("svhn", "cifar100", "celeba", "interp"),  # JEM paper, Table 2
    "digits": ("noise", "uniform", "constant", "interp", "rotated"),
    "synthetic": ("noise", "uniform", "constant", "interp"),
}
DEFAULT_PRESET = {"cifar10": "jem", "digits": "digits"}  # in-distribution -> preset when no --out; else synthetic
CI_LEVEL = 0.95
METRIC_THREADS = 4  # threads computing the (score, set) metrics at most: each holds one bootstrap block
# metric names: f"{metric}/{score}/{out set}"
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95_in_kept", "fpr95_ood_caught", "detection_error")
NOISE_RULE = ("x + sigma * N(0, I) in model space (jembench.forward.test_noise, seed = noise_seed): sample i gets "
              "the same draw in the in-distribution set and in every OOD set")
GRADNORM_RULE = ("-||d log p~(x)/dx||_2 over all C*H*W model-space inputs, eval mode, batched (per-sample exact)")
_PRESET_HELP = "; ".join(f"{k} = {', '.join(v)}" for k, v in PRESETS.items())


def metric_name(metric: str, score: str, out: str) -> str:
    """``auroc/logp/svhn``."""
    return f"{metric}/{score}/{out}"


@dataclass(frozen=True)
class OODSettings(Settings):
    """Settings of ``jembench ood`` (the in-distribution set is the shared ``dataset``, ``--in`` on the command)."""

    out: tuple[str, ...] = option(
        (), "OOD set or preset, repeatable or comma list: a registry name (jembench datasets), npz:PATH, folder:PATH, "
            f"a synthetic set (noise, uniform, constant, interp, rotated) or a preset ({_PRESET_HELP}). Default: "
            "'digits' for digits, 'jem' for cifar10, else 'synthetic'.",
        parse=lambda text: [text], repeatable=True, metavar="NAME")  # comma lists split by expand_out
    scores: tuple[str, ...] = option(tuple(SCORES), "Score(s), repeatable or comma list; higher = more "
                                                    "in-distribution.", choices=lambda: list(SCORES),
                                     noun="OOD score", aliases=("score",), repeatable=True, metavar="NAME")
    temperature: float = option(1.0, "T of the energy-T score T*logsumexp(logits/T).", above=0)
    bootstrap: int = option(1000, "Bootstrap resamples of the AUROC 95% interval (0 = none).", min=0)
    figures: bool = option(True, "Draw the histogram and ROC figures.")

    def check(self, spell):
        if not self.scores:
            yield f"{spell.assign('scores', '')}: name at least one of {', '.join(SCORES)}"


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
    """OOD set names with presets expanded (``jem``, ``digits``, ``synthetic``; see :data:`PRESETS`),
    comma lists split (except npz:/folder: paths), duplicates dropped. None/empty -> the in-distribution's preset."""
    items: list[str] = []
    for o in out or ():
        o = str(o).strip()
        items += [o] if o.startswith(("npz:", "folder:")) else [t.strip() for t in o.split(",") if t.strip()]
    if not items:
        items = [DEFAULT_PRESET.get(in_name, "synthetic")]
    names: list[str] = []
    for item in items:
        for name in PRESETS.get(item, (item,)):
            if name not in names:
                names.append(name)
    return names


def preflight(models: list[HybridModel], s: OODSettings, shared: SharedSettings, spell: Spelling) -> Iterable[str]:
    """Each model's in-distribution test set and every OOD set (presets expanded) present and convertible."""
    for m in models:
        dataset = shared.dataset or default_dataset(m)
        yield from eval_set_problems(m, dataset, "test", data_dir=shared.data_dir, download=shared.download,
                                     need_labels=False)
        for name in expand_out(s.out, dataset if isinstance(dataset, str) else dataset.name):
            yield from ood_set_problems(m, name, data_dir=shared.data_dir, download=shared.download)


def cost(s: OODSettings, shared: SharedSettings, model: HybridModel) -> list[Cost]:
    """Per set (in-distribution and each OOD set): one forward pass for every logit score, plus one forward and one
    backward pass per image for each gradient score."""
    from ..data.synthetic import SYNTHETIC_NAMES

    in_name, n_in = eval_set_size(model, shared.dataset, "test", shared.n)
    names = parse_scores(s.scores)
    grads = sum(SCORES[n].needs != "logits" for n in names)
    sets = [(in_name, n_in)] + [(o, n_in if o in SYNTHETIC_NAMES else set_size(o, "test", shared.n))
                                for o in expand_out(s.out, in_name)]
    out = []
    for name, n in sets:
        if grads < len(names):
            out.append(Cost(f"forward {name}", n, n, shared=forward_key(name, "test", n, shared.sigma, shared.seed)
                            if name == in_name else None))
        if grads:
            out.append(Cost(f"input gradients {name}", n, n * grads, n * grads))
    return out


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


def _score_sets(model: HybridModel, imageset: ImageSet, names: Sequence[str], cache: ForwardCache, timings: dict,
                *, sigma: float, seed: int, temperature: float, batch_size: int,
                progress: bool) -> dict[str, np.ndarray]:
    """Every score of ``names`` on ``imageset``: logit scores from one (cached) forward pass, the others from
    their own (gradient) passes, each timed under ``forward_s`` or ``gradient_s``."""
    out: dict[str, np.ndarray] = {}
    if any(SCORES[n].needs == "logits" for n in names):
        with Timer() as t:
            fp = cache.get(model, imageset, sigma=sigma, seed=seed, batch_size=batch_size, progress=progress)
        timings["forward_s"] += t.seconds
        out.update({n: SCORES[n].compute(fp, temperature).numpy() for n in names if SCORES[n].needs == "logits"})
    for n in (n for n in names if SCORES[n].needs != "logits"):
        with Timer() as t:
            out[n] = SCORES[n].compute(model, imageset, sigma=sigma, seed=seed, batch_size=batch_size,
                                       progress=progress).numpy()
        timings["gradient_s"] += t.seconds
    return {n: out[n] for n in names}


def run(models: list[HybridModel], s: OODSettings, shared: SharedSettings, ctx: Context) -> list[Evaluation]:
    """OOD detection of each model: its in-distribution test set (``shared.dataset``, default the checkpoint's)
    against each ``s.out`` set or preset. Per-sample scores and timings go to the API result (``ctx.extras``)."""
    names = parse_scores(s.scores)
    evaluations, all_scores, all_timings = [], [], []
    for model in models:
        timings = {"forward_s": 0.0, "gradient_s": 0.0, "metrics_s": 0.0, "figures_s": 0.0}
        with Timer() as total:
            ev, raw = _evaluate(model, ctx.slug(model), s, names, shared, ctx, timings)
        ev.wall_time_s = timings["total_s"] = total.seconds
        ev.provenance["time"] = dict(timings)
        evaluations.append(ev)
        all_scores.append(raw)
        all_timings.append(timings)
    ctx.extras.update(scores=all_scores, timings=all_timings, out_dir=ctx.out_dir)
    return evaluations


def _evaluate(model: HybridModel, tag: str, s: OODSettings, names: list[str], shared: SharedSettings, ctx: Context,
              timings: dict) -> tuple[Evaluation, dict]:
    """One model: load and check every set, score them, compute the metrics, write figures and raw scores."""
    import numpy as np

    in_set = load_eval_set(model, shared.dataset, "test", data_dir=shared.data_dir, download=shared.download,
                           n=shared.n, need_labels=False)
    out_sets = _load_out_sets(expand_out(s.out, in_set.name), in_set, model, data_dir=shared.data_dir,
                              download=shared.download, seed=shared.seed, n=shared.n)
    kw = dict(sigma=shared.sigma, seed=shared.seed, temperature=s.temperature, batch_size=shared.batch_size,
              progress=ctx.progress)
    score_in = _score_sets(model, in_set, names, ctx.cache, timings, **kw)
    score_out = {o: _score_sets(model, x, names, ctx.cache, timings, **kw) for o, x in out_sets.items()}
    figures = ctx.out_dir is not None and s.figures
    hists = _write_figures(ctx.out_dir, tag, names, in_set.name, score_in, score_out) if figures else {}
    with Timer() as t:
        metrics, intervals, rows, finite, warnings = _metrics(names, in_set, out_sets, score_in, score_out,
                                                              s.bootstrap, shared.seed, ctx.progress)
    timings["metrics_s"] += t.seconds
    artifacts: dict[str, str] = {}
    if figures:
        with Timer() as t:
            rocs = _write_figures(ctx.out_dir, tag, names, in_set.name, score_in, score_out, finite, metrics)
        timings["figures_s"] += t.seconds
        artifacts.update({k: v for n in names for k, v in ((f"hist/{n}", hists[f"hist/{n}"]),
                                                           (f"roc/{n}", rocs[f"roc/{n}"]))})
    if ctx.save_raw and ctx.out_dir is not None:
        rel = Path("raw") / f"ood_{tag}.npz"
        arrays = {f"{n}.in": score_in[n] for n in names}
        arrays.update({f"{n}.out{j}": score_out[o][n] for j, o in enumerate(out_sets) for n in names})
        atomic_savez(ctx.out_dir / rel, out_names=np.array(list(out_sets)), scores=np.array(names),
                     in_labels=in_set.labels if in_set.labels is not None else np.zeros(0, dtype=np.int64), **arrays)
        artifacts["raw_scores"] = rel.as_posix()
    ev = Evaluation(NAME, model.info.to_dict(), _protocol(model, s, names, shared, in_set, out_sets),
                    metrics=metrics, intervals=intervals, rows=rows, warnings=warnings, artifacts=artifacts)
    return ev, {"in": score_in, "out": score_out}


def _metrics(names: list[str], in_set: ImageSet, out_sets: dict[str, ImageSet], score_in: dict, score_out: dict,
             bootstrap: int, seed: int, progress: bool = False) -> tuple[dict, dict, list, dict, list[str]]:
    """Metrics, AUROC intervals, table rows, the finite scores (for the ROC figure) and warnings of every
    (score, OOD set) pair. The pairs are independent (each its own bootstrap seed), so they are computed by as
    many threads as torch uses, at most :data:`METRIC_THREADS` (NumPy and torch release the GIL in their array
    work; each thread holds one bootstrap block, ~100 MB at most); results keep pair order."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from ..metrics.ood import ood_metrics, sanitize

    warnings, metrics, intervals, rows, finite = [], {}, {}, [], {}
    pairs = [(n, o) for n in names for o in out_sets]
    for n, o in pairs:
        finite[n, o] = sanitize(score_in[n], score_out[o][n])
        bad = finite[n, o][2]
        if bad:
            warnings.append(f"{n} on {in_set.name} vs {o}: {bad} non-finite scores ranked as most OOD "
                            "(NaN, -inf) or most in-distribution (+inf)")
    one = lambda pair: ood_metrics(*finite[pair][:2], bootstrap=bootstrap, level=CI_LEVEL,  # noqa: E731
                                   seed=derive_seed(seed, "ood-bootstrap", *pair))
    with ThreadPoolExecutor(max(1, min(torch.get_num_threads(), METRIC_THREADS, len(pairs)))) as pool:
        results = list(track(pool.map(one, pairs), total=len(pairs), unit="pair", enabled=progress,
                             desc=f"metrics, {bootstrap} bootstrap resamples per pair ({in_set.name})"))
    for (n, o), m in zip(pairs, results):
        rows.append({"score": n, "out": o, **m})
        metrics.update({metric_name(k, n, o): m[k] for k in METRICS})
        if bootstrap:
            intervals[metric_name("auroc", n, o)] = [m["auroc_lo"], m["auroc_hi"]]
    for o, x in out_sets.items():
        if x.fingerprint() == in_set.fingerprint():
            warnings.append(f"OOD set {o!r} holds exactly the in-distribution images: its AUROC is 0.5 by design")
    return metrics, intervals, rows, finite, warnings


def _write_figures(out_dir: Path, tag: str, names: list[str], in_name: str, score_in: dict, score_out: dict,
                   finite: Optional[dict] = None, metrics: Optional[dict] = None) -> dict[str, str]:
    """Per score, drawn through the figure queue (:mod:`jembench.background`): the score histograms (without
    ``metrics``: they need only the scores, so they are drawn while the metrics are computed) or the ROC curves
    (with ``finite`` and ``metrics``, for the AUROC in the legend). Returns ``{label: path relative to out_dir}``."""
    artifacts = {}
    for n in names:
        if metrics is None:
            label, draw, args = f"hist/{n}", "score_histograms", (n, in_name, score_in[n],
                                                                  {o: score_out[o][n] for o in score_out})
        else:
            auroc = {o: metrics[metric_name("auroc", n, o)] for o in score_out}
            label, draw, args = f"roc/{n}", "roc_curves", (n, {o: finite[n, o][:2] for o in score_out}, auroc)
        rel = Path("figures") / NAME / tag / f"{label.replace('/', '_')}.png"
        background.render(f"OOD figure {rel.as_posix()}", _draw, draw, args, out_dir / rel)
        artifacts[label] = rel.as_posix()
    return artifacts


def _draw(draw: str, args: tuple, path: Path) -> dict[Path, bytes]:
    """``jembench.figures.ood.<draw>(*args)`` as the PNG file ``path`` (a figure-worker job)."""
    from ..figures import ood as figures, png_file

    return png_file(getattr(figures, draw)(*args), path, **figures.SAVE_KW)


def _protocol(model: HybridModel, s: OODSettings, names: list[str], shared: SharedSettings, in_set: ImageSet,
              out_sets: dict[str, ImageSet]) -> dict[str, Any]:
    from ..metrics.ood import AUPR_METHOD, BOOTSTRAP_METHOD, FPR_CONVENTIONS

    return {
        "in_dataset": in_set.name, "in_split": in_set.split, "n_in": len(in_set), "in_sha256": in_set.fingerprint(),
        "in_preprocessing": in_set.meta.get("preprocessing", "none"), "n_limit": shared.n,
        "out_sets": [_set_protocol(x) for x in out_sets.values()],
        "scores": names, "score_convention": CONVENTION, "temperature": s.temperature, "gradnorm": GRADNORM_RULE,
        "head": model.info.head, "positive_class": "in-distribution",
        "test_sigma": float(shared.sigma), "noise_seed": int(shared.seed), "noise_rule": NOISE_RULE,
        "aupr_method": AUPR_METHOD, "fpr_conventions": FPR_CONVENTIONS, "tpr_level": 0.95,
        "detection_error": "min over thresholds of 0.5 * (1 - TPR) + 0.5 * FPR",
        "bootstrap": {"resamples": s.bootstrap, "level": CI_LEVEL, "method": BOOTSTRAP_METHOD,
                      "seed": int(shared.seed), "seed_rule": "derive_seed(seed, 'ood-bootstrap', score, out set)"},
    }


def summary_text(result: OODResult) -> str:
    """The command's terminal output: one table per checkpoint, then its warnings."""
    import pandas as pd

    cols = ["score", "out", "auroc", "auroc_lo", "auroc_hi", "aupr_in", "aupr_out", "fpr95_in_kept",
            "fpr95_ood_caught", "detection_error", "n_in", "n_out"]
    parts = []
    for ev in result.evaluations:
        table = pd.DataFrame(ev.rows, columns=cols).to_string(index=False, float_format=lambda v: f"{v:.4f}")
        p = ev.protocol
        parts.append(f"{ev.checkpoint.get('name')}: in = {p['in_dataset']} (n={p['n_in']}), sigma = {p['test_sigma']}"
                     f", in-distribution positive, higher score = more in-distribution\n{table}")
        parts += [f"warning: {w}" for w in ev.warnings]
    return "\n\n".join(parts)


EVALUATOR = Evaluator(
    name=NAME, title="OOD detection", settings=OODSettings, run=run, result=OODResult, summary=summary_text,
    shared=SHARED, headline=("auroc/logp/*", "auroc/*"), headline_last=False,
    metrics=tuple(f"{m}/*/*" for m in METRICS), figures="OOD score histograms and ROC curves",
    positional=("dataset", "out"), renames={"dataset": "in"}, aliases={"in_dataset": "dataset"},
    uses_forward_cache=True, preflight=preflight, cost=cost,
    short_help="OOD detection: AUROC, AUPR-In/Out, FPR@95, detection error per score and OOD set.",
    help="""OOD detection: AUROC, AUPR-In/Out, FPR@95 (both conventions), detection error per score and OOD set.

    In-distribution is the positive class; every score is oriented so that higher = more in-distribution.
    CKPT defaults to $JEMBENCH_CKPT.

    \b
    Examples:
      jembench ood bundled:jem-digits                            digits vs noise, uniform, constant, interp, rotated
      jembench ood --in cifar10 --out svhn                       CKPT from $JEMBENCH_CKPT
      jembench ood jem.pt --out jem --sigma 0.03 --data-dir D    the JEM paper's Table 2 protocol
      jembench ood jem.pt --out svhn --out cifar100 --score logp,gradnorm --save-raw
    """)

ood = EVALUATOR.function()
