"""Adversarial robustness with and without JEM-K SGLD purification, attacked adaptively.

Threat models L-inf and L2 with eps in [0, 1] pixel units; the attacks (torchattacks PGD / PGD-L2 / APGD-CE /
APGD-DLR) run on :class:`jembench.attacks.PixelClassifier`, which maps pixels to the model's input space.
Settings: K = 0 (the undefended model, always reported) and each requested K > 0 (JEM-K purification).

Attacks per setting, each a labelled row (Athalye et al. 2018; Croce et al. 2022):

- K = 0: each attack (``pgd``, ``apgd-ce``, ``apgd-dlr``), white-box.
- K > 0: ``bpda-eot`` (``<attack>-bpda-eot`` for APGD): gradients straight through the purifier, averaged over
  ``eot`` purifications per step; ``transfer``: the K = 0 adversarial examples of every attack;
  ``full-grad`` when K <= ``full_grad_max_k``: gradients through the unrolled SGLD chain (with EOT).

A point is broken by an attack when the prediction from logits averaged over ``eval_purifications`` fresh
purifications is wrong (K = 0: one deterministic pass). The same evaluation noise (seeded per batch) is used for
clean and adversarial inputs. A point is robust under an attack row when it is correct on the clean input and
not broken (so no row exceeds clean accuracy); ``worst`` is the per-image worst case: correct on the clean image
and under every attack row. 95% Wilson intervals. Passes per image count the attack and its evaluation.
Sanity checks (warnings): at eps = 0 every attack must reproduce the clean predictions image by image; a
large-eps probe must bring accuracy to about 0; transfer must not beat the white-box attacks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from .. import background
from ..attacks import ATTACKS, NORMS, check_attack
from ..cost import Cost
from ..errors import JembenchError
from ..io import atomic_savez
from ..preflight import eval_set_problems
from ..results import Evaluation, EvaluatorResult
from ..settings import Settings, Spelling, option
from .base import Context, Evaluator, SharedSettings
from .common import default_dataset, eval_set_size, forward_key, load_eval_set
from .robust_config import RobustConfig, attack_label, metric_name, setting_costs
from .robust_run import NAME, PASS_KEYS, ModelRun

if TYPE_CHECKING:  # torch-backed: imported where used, so the settings and the registry entry stay light
    import torch

    from ..models import HybridModel

__all__ = ["PASS_KEYS", "RobustResult", "RobustSettings", "attack_label", "metric_name", "robust"]
log = logging.getLogger("jembench")
SHARED = ("dataset", "seed", "device", "batch_size", "data_dir", "download", "head", "norm", "cache_dir",
          "precision")
PIXELS = "pixels in [0, 1]"


@dataclass(frozen=True)
class RobustSettings(Settings):
    """Settings of ``jembench robust`` (run-all: one step per threat model)."""

    threat: tuple[str, ...] = option(("linf",), "Threat model(s), comma list: one set of results per norm. (Formerly "
                                                "--norm, which now overrides the model's normalisation layer.)",
                                     choices=NORMS, aliases=("threats",), deprecated=("norm", "norms"),
                                     metavar="linf|l2")
    eps: Optional[tuple[float, ...]] = option(None, "Budgets of the chosen threat model, comma list, fractions "
                                                    "allowed; replaces --eps-linf / --eps-l2 (one norm only).",
                                              min=0, unit=PIXELS)
    eps_linf: tuple[float, ...] = option((0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255), "L-inf budgets.", min=0, max=1,
                                         unit=PIXELS)
    eps_l2: tuple[float, ...] = option((0.0, 0.25, 0.5, 1.0), "L2 budgets.", min=0, unit=PIXELS)
    n: Optional[int] = option(300, "Test images (the first N; JEM evaluated about 300).", min=1)
    purify_steps: tuple[int, ...] = option((0,), "JEM-K settings: SGLD purification steps K, e.g. 0,1,10. K=0 "
                                                 "(undefended) is always reported.", min=0)
    attacks: tuple[str, ...] = option(("pgd",), "Attacks, comma list (torchattacks).", choices=lambda: list(ATTACKS),
                                   noun="attack")
    steps: int = option(40, "Attack iterations (JEM: 40; Hill et al. 2021: 50).", min=1)
    step_size: Optional[float] = option(None, "Attack step (e.g. 2/255). Default: linf max(2/255, 2.5*eps/steps); "
                                              "l2 2.5*eps/steps.", above=0, unit=PIXELS)
    restarts: int = option(1, "Random restarts; a point is broken if any restart breaks it.", min=1)
    eot: int = option(5, "Purifications averaged per attack gradient on defended models (EOT; Hill et al. use 15).",
                      min=1)
    eval_purifications: int = option(10, "Fresh purifications whose averaged logits decide a break (Hill et al. use "
                                         "150).", min=1)
    full_grad_max_k: int = option(2, "Also attack with full gradients through the SGLD chain when K <= this "
                                     "(memory grows with K).", min=0)
    purify_step_size: float = option(1.0, "SGLD step of the purifier (JEM-K: 1).", min=0, unit="model space")
    purify_noise: float = option(0.01, "SGLD noise of the purifier (JEM-K: 0.01).", min=0, unit="model space")
    purify_copies: int = option(5, "Noisy copies purified per input; their logits are averaged.", min=1)
    purify_sigma: float = option(0.03, "Start noise of each copy.", min=0, unit="model space")
    probe: bool = option(True, "Large-eps probe: accuracy must fall to about 0, else a warning (gradient masking).")
    split: str = option("test", "Dataset split to attack.")

    def eps_for(self, norm: str) -> tuple[float, ...]:
        """The budgets of ``norm``: ``eps`` when given, else ``eps_linf`` / ``eps_l2``."""
        if self.eps is not None:
            return self.eps
        return self.eps_linf if norm == "linf" else self.eps_l2

    def check(self, spell):
        if self.eps is not None and len(set(self.threat)) > 1:
            yield (f"{spell.option('eps')} applies to one threat model, but {spell.assign('threat', self.threat)} "
                   f"names {len(set(self.threat))}: give {spell.option('eps_linf')} and {spell.option('eps_l2')}")
        for norm in self.threat:
            eps = self.eps_for(norm)
            name = "eps" if self.eps is not None else f"eps_{norm}"
            if not eps:
                yield f"{spell.assign(name, '')}: empty; give budgets like 0,2/255,8/255"
            elif norm == "linf" and max(eps) > 1:
                yield (f"{spell.assign(name, eps)}: L-inf budgets are pixel units and must lie in [0, 1] "
                       "(write 8/255, not 8)")
        if not self.attacks:
            yield f"{spell.assign('attacks', '')}: name at least one of {', '.join(ATTACKS)}"
        if not self.threat:
            yield f"{spell.assign('threat', '')}: name linf, l2 or both"


@dataclass
class RobustResult(EvaluatorResult):
    """``evaluations`` (one per checkpoint, threat model and setting K) and the results document."""

    def table(self) -> str:
        """Clean and worst-case robust accuracy per checkpoint, setting and eps (the CLI summary)."""
        lines = [f"{'checkpoint':<20} {'K':>3} {'eps':>8} {'clean':>6} {'robust':>6}  attacks"]
        for ev in self.evaluations:
            rows = ev.rows
            clean = next((r["acc"] for r in rows if r["attack"] == "clean"), math.nan)
            for eps in sorted({r["eps"] for r in rows if r["attack"] == "worst"}):
                at = {r["attack"]: r["acc"] for r in rows if r["eps"] == eps and r["attack"] not in ("clean", "probe")}
                detail = " ".join(f"{a}={v:.3f}" for a, v in at.items() if a != "worst")
                eps_txt = f"{eps * 255:.1f}/255" if ev.protocol["threat_model"] == "linf" else f"{eps:.3f}"
                lines.append(f"{str(ev.checkpoint.get('name')):<20} {ev.protocol['K']:>3} {eps_txt:>8} {clean:>6.3f} "
                             f"{at['worst']:>6.3f}  {detail}")
        return "\n".join(lines)


def run(models: list[HybridModel], s: RobustSettings, shared: SharedSettings, ctx: Context) -> list[Evaluation]:
    """Robust accuracy of each model under each threat model of ``s.threat``, undefended (K = 0) and with JEM-K
    purification for each K in ``s.purify_steps``; curves (and per-image correctness) written to ``ctx.out_dir``."""
    sets = [load_eval_set(m, shared.dataset, s.split, data_dir=shared.data_dir, download=shared.download, n=s.n)
            for m in models]
    for m in models:
        for norm in s.threat:
            for a in s.attacks:
                check_attack(a, norm, m.info.n_classes)
    evaluations: list[Evaluation] = []
    for norm in dict.fromkeys(s.threat):
        cfg = RobustConfig.for_norm(s, norm, shared.seed, shared.batch_size, shared.batch_auto)
        for model, imageset in zip(models, sets):
            evs = ModelRun(model, imageset, cfg, ctx.cache, ctx.progress).evaluate()
            if ctx.out_dir is not None:
                _write_artifacts(ctx.out_dir, ctx.slug(model), evs, cfg, ctx.save_raw, imageset.labels)
            for ev in evs:
                ev.rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in ev.rows]
                for w in ev.warnings:
                    log.warning("%s K=%s: %s", ev.checkpoint.get("name"), ev.protocol["K"], w)
            evaluations.extend(evs)
    return evaluations


def preflight(models: list[HybridModel], s: RobustSettings, shared: SharedSettings,
              spell: Spelling) -> Iterable[str]:
    """Each model's labelled evaluation set present and of its shape and classes; each attack fits each model."""
    for m in models:
        yield from eval_set_problems(m, shared.dataset or default_dataset(m), s.split, data_dir=shared.data_dir,
                                     download=shared.download)
        for norm in s.threat:
            for a in s.attacks:
                try:
                    check_attack(a, norm, m.info.n_classes)
                except JembenchError as exc:
                    yield from exc.lines()


def cost(s: RobustSettings, shared: SharedSettings, model: HybridModel) -> list[Cost]:
    """Every attack, eps and setting K of every threat model, with their evaluations (see ``setting_costs``);
    APGD counts are an upper bound (it attacks only the points still classified correctly)."""
    name, n = eval_set_size(model, shared.dataset, s.split, s.n)
    out = []
    for norm in dict.fromkeys(s.threat):
        cfg = RobustConfig.for_norm(s, norm, shared.seed, shared.batch_size)
        for k in cfg.purify_steps:
            clean = forward_key(name, s.split, n, 0.0, shared.seed) if k == 0 else None
            out += setting_costs(cfg, k, n, clean)
    return out


def per_norm_steps(s: RobustSettings) -> list[tuple[str, RobustSettings]]:
    """run-all attacks one threat model per step (so each resumes on its own)."""
    return [(norm, replace(s, threat=(norm,))) for norm in dict.fromkeys(s.threat)]


def _write_artifacts(out_dir: Path, slug: str, evs: list[Evaluation], cfg: RobustConfig, save_raw: bool,
                     labels: torch.Tensor) -> None:
    """The accuracy-vs-eps figure and (``save_raw``) per-image correctness ``[rows, N]`` with row labels."""
    import numpy as np
    import torch

    rows = [r for ev in evs for r in ev.rows]
    png = f"robust-{slug}-{cfg.norm}.png"
    background.render(f"robustness figure {png}", _draw_curves, [dict(r) for r in rows], cfg.norm,
                      f"{slug}: {cfg.norm} robust accuracy (n={rows[0]['n']})", out_dir / png)
    artifacts = {"accuracy vs eps": png}
    if save_raw:
        raw = f"robust-{slug}-{cfg.norm}.npz"
        rows_all = [r for r in rows if r["attack"] != "probe"]
        row_labels = [f"K={r['K']}|eps={'' if r['eps'] is None else repr(r['eps'])}|{r['attack']}" for r in rows_all]
        atomic_savez(out_dir / raw, correct=torch.stack([r["_correct"] for r in rows_all]).numpy(),
                     row_labels=np.array(row_labels), labels=labels.numpy())
        artifacts["per-image correctness (npz)"] = raw
    for ev in evs:
        ev.artifacts.update(artifacts)


def _draw_curves(rows: list[dict], norm: str, title: str, path: Path) -> dict[Path, bytes]:
    """The accuracy-vs-eps figure of ``rows`` as the PNG file ``path`` (a figure-worker job,
    :mod:`jembench.background`)."""
    from ..figures import png_file
    from ..figures.robust import accuracy_vs_eps

    return png_file(accuracy_vs_eps(rows, norm=norm, title=title), path)


EVALUATOR = Evaluator(
    name=NAME, title="Robustness", settings=RobustSettings, run=run, result=RobustResult,
    summary=RobustResult.table, shared=SHARED, headline=("robust_acc/*/worst",), headline_last=True,
    metrics=("clean_acc/K=*", "robust_acc/*/*/K=*/*", "probe_acc/*/*/K=*"), figures="Robustness curves",
    positional=(), uses_forward_cache=True, steps=per_norm_steps, preflight=preflight,
    cost=cost,
    short_help="Robust accuracy under PGD / APGD, with and without SGLD purification.",
    help="""Robust accuracy of CKPT... under L-inf or L2 attacks, undefended (K=0) and with JEM-K purification.

    Attacks (torchattacks, seeded) run on images in [0, 1]; a wrapper maps them to the model's input space.
    On purified models every attack is adaptive: BPDA with EOT, transfer of the undefended model's adversarial
    examples, and full gradients through the chain for small K. A point counts as broken only if the logits
    averaged over --eval-purifications fresh purifications predict a wrong class. Robust accuracy is the
    per-image worst case over attacks, with 95% Wilson intervals.

    \b
    Examples:
      jembench robust bundled:jem-digits --eps 0,2/255,8/255 --n 100
      jembench robust ckpt.pt --purify-steps 0,1,10 --eot 15 --eval-purifications 150
      jembench robust ckpt.pt --threat l2 --eps 0,0.5,1 --attacks pgd,apgd-ce,apgd-dlr
      jembench robust groupnorm-jem.pt --norm layer --dataset cifar10   (model overrides, as on every command)
    """)

robust = EVALUATOR.function()
