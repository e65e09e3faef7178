"""Paired comparisons between checkpoints measured on the same samples (results.json ``comparisons``).

Only evaluations of one comparison table (same evaluator and ``protocol_key``: same data, N, noise, seeds, budgets)
are compared, and only when their per-sample arrays (run-all always saves them; evaluator commands with
``--save-raw``) hold the same samples (equal labels and sizes). Pairs: every checkpoint against the baseline when
there is one (``baseline`` names it, else the one checkpoint trained as a plain classifier: ``px_weight`` 0 in its
training record), else every pair. Tests (:mod:`jembench.metrics.paired`): McNemar's exact test for accuracies
(clean, robust per-image worst case) with a paired-bootstrap interval; paired bootstrap for NLL, Brier, ECE and
AUROC (per OOD set, and its mean over the sets). p-values are adjusted over the whole family (Holm).
Generation metrics are not paired (each model draws its own samples) and are not tested.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import JembenchError
from ..metrics import paired
from ..results import Evaluation
from .render import Run

RESAMPLES = 1000
LEVEL = 0.95
ALPHA = 0.05  # family-wise error rate of the Holm-adjusted p-values


@dataclass
class Comparison:
    """``value_a - value_b`` of ``metric`` between checkpoints ``a`` and ``b`` (one comparison table)."""

    evaluator: str
    protocol_key: str
    metric: str
    a: str
    b: str
    value_a: Optional[float]
    value_b: Optional[float]
    difference: float
    interval: list[float]
    p_value: float
    test: str
    n: int
    p_holm: Optional[float] = None
    resamples: int = RESAMPLES
    seed: int = 0
    level: float = LEVEL

    @property
    def significant(self) -> bool:
        return (self.p_holm if self.p_holm is not None else self.p_value) < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


@dataclass
class Member:
    evaluation: Evaluation
    run: Run
    label: str


def is_plain_classifier(checkpoint: dict[str, Any]) -> bool:
    """A checkpoint trained without the generative term (``px_weight`` 0 or objective ``classifier``)."""
    cfg = checkpoint.get("train_config") or {}
    return cfg.get("px_weight") == 0 or cfg.get("objective") == "classifier"


def names_checkpoint(baseline: str, checkpoint: dict[str, Any], label: str) -> bool:
    """Whether ``baseline`` is the checkpoint's label, name, path, file name, file stem or sha256."""
    path = str(checkpoint.get("path") or "")
    return baseline in (label, checkpoint.get("name"), path, Path(path).name, Path(path).stem, checkpoint.get("sha256"))


def find_baseline(members: Sequence[Member], baseline: Optional[str]) -> Optional[Member]:
    """The member ``baseline`` names (:func:`names_checkpoint`), else the one plain classifier."""
    if baseline:
        return next((m for m in members if names_checkpoint(baseline, m.evaluation.checkpoint, m.label)), None)
    plain = [m for m in members if is_plain_classifier(m.evaluation.checkpoint)]
    return plain[0] if len(plain) == 1 else None


def pairs(members: Sequence[Member], baseline: Optional[str]) -> list[tuple[Member, Member]]:
    base = find_baseline(members, baseline)
    if base is not None:
        return [(m, base) for m in members if m is not base]
    return list(itertools.combinations(members, 2))


def _load(member: Member, *keys: str) -> Optional[Any]:
    """The member's per-sample npz (first artifact key present), or None when absent, unreadable or outside its
    results folder (read only from there, as the report embeds only files from there)."""
    for key in keys:
        rel = member.evaluation.artifacts.get(key)
        if rel is None:
            continue
        path = Path(rel) if Path(rel).is_absolute() else member.run.base_dir / rel
        if not path.resolve().is_relative_to(member.run.base_dir.resolve()):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None
    return None


Sample = tuple[str, Any]  # (kind, data): "correct" [N] bool, "mean" [N] float, "ece" (conf, hit, bins),
# "auroc" (in scores, [out scores per set], [set names]): one key per score, metrics per set and their mean


def _clf_samples(ev: Evaluation, z: dict) -> dict[str, Sample]:
    probs, labels = z["probs"].astype(np.float64), z["labels"].astype(np.int64)
    rows = np.arange(len(labels))
    out: dict[str, Sample] = {"accuracy": ("correct", probs.argmax(1) == labels)}
    if "logits" in z:
        logits = z["logits"].astype(np.float64)
        top = logits.max(1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(logits - top).sum(1))
        out["nll"] = ("mean", lse - logits[rows, labels])
    onehot = np.zeros_like(probs)
    onehot[rows, labels] = 1.0
    out["brier"] = ("mean", ((probs - onehot) ** 2).sum(1))
    return out


def _calib_samples(ev: Evaluation, z: dict) -> dict[str, Sample]:
    probs, labels = z["probs"].astype(np.float64), z["labels"].astype(np.int64)
    return {"ece": ("ece", (probs.max(1), probs.argmax(1) == labels, int(ev.protocol.get("bins") or 15)))}


def _ood_samples(ev: Evaluation, z: dict) -> dict[str, Sample]:
    out: dict[str, Sample] = {}
    sets = [str(s) for s in z["out_names"]]
    for score in (str(s) for s in z["scores"]):
        out[f"auroc/{score}"] = ("auroc", (z[f"{score}.in"], [z[f"{score}.out{j}"] for j in range(len(sets))], sets))
    return out


def _robust_samples(ev: Evaluation, z: dict) -> dict[str, Sample]:
    k, norm = ev.protocol.get("K"), ev.protocol.get("threat_model")
    out: dict[str, Sample] = {}
    for label, correct in zip((str(r) for r in z["row_labels"]), z["correct"]):
        row_k, eps, attack = label.split("|")
        if row_k != f"K={k}" or attack not in ("clean", "worst"):
            continue
        eps = eps.removeprefix("eps=")
        name = f"clean_acc/K={k}" if attack == "clean" else f"robust_acc/{norm}/{float(eps):.4f}/K={k}/worst"
        out[name] = ("correct", correct.astype(bool))
    return out


SAMPLERS: dict[str, tuple[tuple[str, ...], Callable[[Evaluation, dict], dict[str, Sample]], str]] = {
    "clf": (("raw",), _clf_samples, "labels"),
    "calib": (("raw",), _calib_samples, "labels"),
    "ood": (("raw_scores",), _ood_samples, "in_labels"),
    "robust": (("per-image correctness (npz)",), _robust_samples, "labels"),
}


def metric_value(ev: Evaluation, metric: str) -> Optional[float]:
    """The evaluation's value of ``metric``; ``auroc/<score>/mean`` is the mean over its OOD sets."""
    if metric.startswith("auroc/") and metric.endswith("/mean"):
        prefix = metric[:-len("mean")]
        values = [v for m, v in ev.metrics.items() if m.startswith(prefix) and m.count("/") == 2 and v is not None]
        return float(np.mean(values)) if values else None
    value = ev.metrics.get(metric)
    return float(value) if value is not None else None


def _differences(metric: str, kind: str, a: Any, b: Any, seed: int) -> list[tuple[str, paired.Difference]]:
    """``(metric, difference)`` pairs of one sample entry (an AUROC entry gives each OOD set and their mean)."""
    kw = {"resamples": RESAMPLES, "seed": seed, "level": LEVEL}
    if kind == "correct":
        return [(metric, paired.accuracy_difference(a, b, **kw))]
    if kind == "mean":
        return [(metric, paired.mean_difference(a, b, **kw))]
    if kind == "ece":
        return [(metric, paired.ece_difference(a[0], a[1], b[0], b[1], a[2], **kw))]
    if list(a[2]) != list(b[2]):
        return []
    names = [f"{metric}/{s}" for s in a[2]] + ([f"{metric}/mean"] if len(a[2]) > 1 else [])
    return list(zip(names, paired.auroc_differences(a[0], a[1], b[0], b[1], **kw)))


def _same_samples(za: dict, zb: dict, labels: str, sa: dict[str, Sample], sb: dict[str, Sample]) -> bool:
    if labels in za and labels in zb and not np.array_equal(za[labels], zb[labels]):
        return False
    shapes = lambda s: {m: np.shape(d) if k != "auroc" else [len(d[0]), *map(len, d[1]), *d[2]]  # noqa: E731
                        for m, (k, d) in s.items() if k != "ece"}
    return shapes(sa) == {m: v for m, v in shapes(sb).items() if m in sa}


def compare_pair(a: Member, b: Member, seed: int) -> list[Comparison]:
    """Every paired comparison of two members of one table (empty when arrays are missing or samples differ)."""
    spec = SAMPLERS.get(a.evaluation.evaluator)
    if spec is None:
        return []
    keys, sampler, labels = spec
    za, zb = _load(a, *keys), _load(b, *keys)
    if za is None or zb is None:
        return []
    sa, sb = sampler(a.evaluation, za), sampler(b.evaluation, zb)
    if not _same_samples(za, zb, labels, sa, sb):
        return []
    out = []
    for key, (kind, data_a) in sa.items():
        if key not in sb:
            continue
        for metric, d in _differences(key, kind, data_a, sb[key][1], seed):
            out.append(Comparison(a.evaluation.evaluator, a.evaluation.protocol_key, metric, a.label, b.label,
                                  metric_value(a.evaluation, metric), metric_value(b.evaluation, metric),
                                  d.difference, list(d.interval), d.p_value, d.test, d.n, seed=seed))
    return out


def table_members(runs: Sequence[Run]) -> dict[tuple[str, str], list[Member]]:
    """Successful evaluations grouped by comparison table, labelled as in the tables."""
    from .tables import _row_labels

    groups: dict[tuple[str, str], list[tuple[Evaluation, Run]]] = {}
    for run in runs:
        for ev in run.evaluations:
            if ev.status == "ok" and ev.metrics:
                groups.setdefault((ev.evaluator, ev.protocol_key), []).append((ev, run))
    return {key: [Member(ev, run, label) for (ev, run), label in
                  zip(members, _row_labels([(ev, run.label) for ev, run in members]))]
            for key, members in groups.items()}


def compare_runs(runs: Sequence[Run], *, baseline: Optional[str] = None) -> list[Comparison]:
    """Paired comparisons of every table with two or more checkpoints, Holm-adjusted over all of them; a
    ``baseline`` that names no checkpoint is a one-line error."""
    groups = table_members(runs)
    if baseline and not any(find_baseline(members, baseline) for members in groups.values()):
        names = sorted({m.label for members in groups.values() for m in members})
        raise JembenchError(f"--baseline {baseline!r} names no checkpoint of these results; checkpoints: "
                            f"{', '.join(names)}")
    out: list[Comparison] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        for a, b in pairs(members, baseline):
            out += compare_pair(a, b, seed=int(a.run.provenance.get("seed") or 0))
    for c, p in zip(out, paired.holm([c.p_value for c in out])):
        c.p_holm = p
    return out

