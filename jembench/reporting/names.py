"""Metric names in words and which way is better, for headlines, the verdict and the best-value marks.

Metric names are the evaluators' (``auroc/logp/svhn``, ``robust_acc/linf/0.0314/K=1/worst``, ``fid/digits-wrn/train``);
this module only reads them. ``describe`` turns one into words ("robust accuracy, L-inf 8/255, JEM-1, worst case");
``direction`` says whether higher (+1) or lower (-1) is better, 0 when neither (counts, temperatures, spreads).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..results import Evaluation

HIGHER = ("accuracy", "auroc", "aupr_in", "aupr_out", "clean_acc", "robust_acc", "is", "precision", "recall")
LOWER = ("error", "nll", "brier", "ece", "adaptive_ece", "mce", "rms_ce", "classwise_ece", "fpr95_in_kept",
         "fpr95_ood_caught", "detection_error", "fid", "kid", "bpd", "bits_per_dim")
SCORES = {"logp": "log p(x)", "msp": "max p(y|x)", "maxlogit": "max logit", "energy-T": "energy score",
          "gradnorm": "approx. mass"}
WORDS = {"accuracy": "accuracy", "error": "error", "nll": "NLL", "brier": "Brier score", "ece": "ECE",
         "adaptive_ece": "adaptive ECE", "mce": "MCE", "rms_ce": "RMS calibration error",
         "classwise_ece": "classwise ECE", "mean_confidence": "mean confidence", "n": "N", "auroc": "AUROC",
         "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "fpr95_in_kept": "FPR at 95% in-distribution kept",
         "fpr95_ood_caught": "in-distribution rejected at 95% OOD caught", "detection_error": "detection error",
         "clean_acc": "clean accuracy", "robust_acc": "robust accuracy", "probe_acc": "large-eps probe accuracy",
         "is": "IS", "is_std": "IS std", "is_real": "IS of real images", "fid": "FID", "kid": "KID",
         "kid_std": "KID std", "precision": "precision", "recall": "recall"}
# density metrics, by their whole name (the first component only says which estimator): (direction, words)
DENSITY = {"ais/log_px": (1, "test log-likelihood log p(x), AIS"), "ais/bits_per_dim": (-1, "bits/dim, AIS"),
           "sm/dsm": (-1, "denoising score matching loss, sigma"), "sm/ssm": (-1, "sliced score matching loss"),
           "ais/log_z": (0, "log Z, forward AIS (low side)"), "ais/log_z_upper": (0, "log Z, reverse AIS (high side)"),
           "log_p_tilde": (0, "mean unnormalised log p~(x)")}
ATTACKS = {"worst": "worst case", "bpda-eot": "BPDA+EOT", "transfer": "transfer", "full-grad": "full gradient"}


def direction(metric: str) -> int:
    """+1 when a higher value is better, -1 when lower is, 0 otherwise (by the name's first component)."""
    if _density(metric):
        return DENSITY[_density(metric)][0]
    head = metric.split("/")[0]
    return 1 if head in HIGHER else -1 if head in LOWER else 0


def _density(metric: str) -> Optional[str]:
    """The :data:`DENSITY` entry of ``metric`` (``sm/dsm/0.1`` is ``sm/dsm``), or None."""
    key = "sm/dsm" if metric.startswith("sm/dsm/") else metric
    return key if key in DENSITY else None


def eps_words(norm: str, eps: float) -> str:
    """``8/255`` for L-inf budgets on the 1/255 grid (pixels in [0, 1]), else the number; norm as L-inf / L2."""
    name = {"linf": "L-inf", "l2": "L2"}.get(norm, norm)
    if norm == "linf":
        x = eps * 255
        return f"{name} {round(x)}/255" if abs(x - round(x)) < 0.05 else f"{name} {eps:g}"
    return f"{name} {eps:g}"


def k_words(k: Any) -> str:
    return "undefended" if str(k) in ("0", "None") else f"JEM-{k}"


def describe(metric: str, protocol: Optional[Mapping[str, Any]] = None) -> str:
    """The metric in words, with what its name encodes (score, OOD set, budget, K, extractor, reference)."""
    if _density(metric):
        words = DENSITY[_density(metric)][1]
        return f"{words} {metric.rsplit('/', 1)[1]}" if metric.startswith("sm/dsm/") else words
    parts = metric.split("/")
    head, rest = parts[0], parts[1:]
    word = WORDS.get(head, head.replace("_", " "))
    protocol = protocol or {}
    if head in ("auroc", "aupr_in", "aupr_out", "fpr95_in_kept", "fpr95_ood_caught", "detection_error") and \
            len(rest) == 2:
        in_set = protocol.get("in_dataset")
        out = "the mean over the OOD sets" if rest[1] == "mean" else rest[1]
        return f"{word}, {SCORES.get(rest[0], rest[0])}, {in_set + ' vs ' if in_set else 'vs '}{out}"
    if head in ("robust_acc", "probe_acc") and len(rest) >= 3:
        try:
            budget = eps_words(rest[0], float(rest[1]))
        except ValueError:
            budget = f"{rest[0]} {rest[1]}"
        k = rest[2].removeprefix("K=")
        attack = f", {ATTACKS.get(rest[3], rest[3])}" if len(rest) > 3 else ""
        return f"{word}, {budget}, {k_words(k)}{attack}"
    if head == "clean_acc" and rest:
        return f"{word}, {k_words(rest[0].removeprefix('K='))}"
    if head in ("is", "is_std") and rest:
        return f"{word} ({rest[0]} logits)"
    if head in ("fid", "kid", "kid_std", "precision", "recall", "is_real") and len(rest) == 2:
        return f"{word} ({rest[0]} features, vs {rest[1]})"
    if head in ("ece", "adaptive_ece", "mce", "rms_ce", "classwise_ece") and protocol.get("bins"):
        return f"{word} ({protocol['bins']} bins)"
    if head == "temperature_scaling" and rest:
        return f"temperature scaling: {rest[0].replace('_', ' ')}"
    return "/".join([word, *rest])


def evaluation_set(ev: Evaluation) -> str:
    """The data an evaluation measured, in words: "digits test, N=360"; OOD: in-distribution vs each set."""
    p = ev.protocol
    if ev.evaluator == "ood":
        sets = ", ".join(str(s.get("name")) for s in p.get("out_sets") or [] if isinstance(s, dict))
        return f"{p.get('in_dataset')} {p.get('in_split', '')}, N={p.get('n_in')} vs {sets}".replace("  ", " ")
    if ev.evaluator == "gen":
        ref = p.get("reference") or {}
        return f"N={p.get('n')} samples vs {ref.get('dataset', p.get('dataset'))} {ref.get('split', '')}".strip()
    if p.get("dataset") is None:
        return ""
    return f"{p.get('dataset')} {p.get('split', '')}, N={p.get('n')}".replace(" ,", ",")
