"""The adaptive robustness evaluation of one model under one threat model: every attack, eps and JEM-K setting.

:class:`ModelRun` runs the attacks of :mod:`jembench.evaluators.robust` (see its docstring for the rows, the break
rule and the sanity checks) on one model and evaluation set; :class:`RobustConfig` is the configuration of one
threat model, derived from the evaluator's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from .. import distributed
from ..attacks import build_attack, default_step_size, run_attack
from ..cost import Cost
from ..progress import bar
from ..results import Evaluation
from ..rng import RECIPE
from ..runtime import derive_seed
from ..settings import hint
from .common import Timer

if TYPE_CHECKING:  # torch-backed: imported where used, so the robust evaluator's settings stay light
    import torch

    from ..attacks import PurifyConfig
    from ..data.imageset import ImageSet
    from ..forward import ForwardCache
    from ..models import HybridModel

NAME = "robust"
PASS_KEYS = ("fwd_per_image", "bwd_per_image", "eval_fwd_per_image", "eval_bwd_per_image")
SEED_RECIPE = (f"{RECIPE}: attack seed s = derive_seed(seed, 'attack', norm, eps, K, label, restart); PGD random "
               "starts keyed by sample index from s (jembench.attacks.pgd), purification / EOT noise during the "
               "attack keyed by sample index from derive_seed(s, 'purify') (jembench.attacks.wrapper); evaluation "
               "purifications keyed by sample index from derive_seed(seed, 'eval-purify', K), the R of them "
               "batched as replicas; APGD (torchattacks, not keyed): torch global RNG and APGD seed = "
               "derive_seed(s, 'batch', first index of the batch), its purification noise from "
               "derive_seed(s, 'purify', first index)")
PROBE_N = 16  # images of the large-eps probe (accuracy must fall to about 0)
PROBE_EPS = {"linf": 0.5, "l2": 0.5}  # l2: times sqrt(C * H * W), i.e. the corner of the 0.5 L-inf ball
PROBE_MAX_ACC = 0.1  # probe accuracy above this raises a warning (gradient masking or a broken attack)


@dataclass(frozen=True)
class RobustConfig:
    """Everything that decides the numbers (besides model and data)."""

    norm: str
    eps: tuple[float, ...]
    purify_steps: tuple[int, ...]
    attacks: tuple[str, ...]
    steps: int
    step_size: Optional[float]
    restarts: int
    eot: int
    eval_purifications: int
    full_grad_max_k: int
    purify: PurifyConfig
    probe: bool
    seed: int
    batch_size: int

    def purify_config(self, k: int) -> PurifyConfig:
        return replace(self.purify, steps=k)

    def alpha(self, eps: float) -> float:
        return default_step_size(self.norm, eps, self.steps) if self.step_size is None else self.step_size

    @classmethod
    def for_norm(cls, s: Any, norm: str, seed: int, batch_size: int) -> "RobustConfig":
        """The configuration of one threat model from :class:`~jembench.evaluators.robust.RobustSettings`."""
        from ..attacks import PurifyConfig

        return cls(norm=norm, eps=tuple(sorted(set(s.eps_for(norm)))), purify_steps=tuple(sorted({0, *s.purify_steps})),
                   attacks=tuple(dict.fromkeys(s.attacks)), steps=s.steps, step_size=s.step_size,
                   restarts=s.restarts, eot=s.eot, eval_purifications=s.eval_purifications,
                   full_grad_max_k=s.full_grad_max_k,
                   purify=PurifyConfig(0, s.purify_step_size, s.purify_noise, s.purify_copies, s.purify_sigma),
                   probe=s.probe, seed=seed, batch_size=batch_size)

    def probe_eps(self, shape: tuple[int, ...]) -> float:
        base = PROBE_EPS[self.norm]
        return base if self.norm == "linf" else base * math.sqrt(math.prod(shape))


def attack_label(attack: str, k: int, gradient: str = "bpda") -> str:
    """Row label: the attack's name at K = 0; ``bpda-eot`` / ``full-grad`` (prefixed by non-PGD attacks) at K > 0."""
    if k == 0:
        return attack
    suffix = "bpda-eot" if gradient == "bpda" else "full-grad"
    return suffix if attack == "pgd" else f"{attack}-{suffix}"


def metric_name(norm: str, eps: float, k: int, label: str) -> str:
    """``robust_acc/linf/0.0314/K=10/bpda-eot`` (eps with 4 decimals, pixel units)."""
    return f"robust_acc/{norm}/{eps:.4f}/K={k}/{label}"


def _call_passes(cfg: RobustConfig, k: int, gradient: Optional[str]) -> tuple[int, int]:
    """(forward, backward) passes per image of one call of the classifier: K = 0 one pass; K > 0 each of the
    copies runs K SGLD steps (1 + 1 each) and a final forward; an attack gradient adds one backward per copy (BPDA)
    or 1 + 2K (through the unrolled chain), as :class:`~jembench.attacks.PassCounter` counts."""
    copies = cfg.purify.copies if k else 1
    fwd, bwd = copies * (k + 1), copies * k
    if gradient is not None:
        bwd += copies * (1 + 2 * k if gradient == "full" else 1)
    return fwd, bwd


def setting_costs(cfg: RobustConfig, k: int, n: int, clean_key: Optional[str] = None) -> list[Cost]:
    """Passes of one setting K on ``n`` images: its clean predictions, every attack row (restarts x steps x EOT
    gradient calls, then the evaluation: R purifications), transfer, full gradients, the probe."""
    reps = cfg.eval_purifications if k else 1
    ef, eb = (reps * x for x in _call_passes(cfg, k, None))

    def attack(part: str, m: int, gradient: str) -> Cost:
        af, ab = _call_passes(cfg, k, gradient)
        calls = cfg.steps * (cfg.eot if k else 1)
        r = cfg.restarts
        return Cost(part, m, m * r * (calls * af + ef), m * r * (calls * ab + eb), attack_steps=m * r * cfg.steps,
                    sampler_steps=m * r * (calls + reps) * (cfg.purify.copies * k))

    out = [Cost(f"{cfg.norm} K={k} clean", n, n * ef, n * eb, sampler_steps=n * reps * cfg.purify.copies * k,
                shared=clean_key)]
    for eps in cfg.eps:
        out += [attack(f"{cfg.norm} K={k} eps={eps:.4g} {attack_label(a, k)}", n, "bpda") for a in cfg.attacks]
        if k:
            sources = len(cfg.attacks) * cfg.restarts
            out.append(Cost(f"{cfg.norm} K={k} eps={eps:.4g} transfer", n, n * sources * ef, n * sources * eb,
                            sampler_steps=n * sources * reps * cfg.purify.copies * k))
        if 0 < k <= cfg.full_grad_max_k:
            out.append(attack(f"{cfg.norm} K={k} eps={eps:.4g} {attack_label(cfg.attacks[0], k, 'full')}", n, "full"))
    if cfg.probe:
        out.append(attack(f"{cfg.norm} K={k} probe", min(PROBE_N, n), "bpda"))
    return out


class ModelRun:
    """All settings and budgets for one model and evaluation set."""

    def __init__(self, model: HybridModel, imageset: ImageSet, cfg: RobustConfig, cache: ForwardCache,
                 progress: bool):

        from ..attacks import PassCounter

        self.model, self.imageset, self.cfg, self.cache = model, imageset, cfg, cache
        self.x01 = imageset.pixels01().to(model.device)
        self.y = imageset.labels.to(model.device)
        self.eval_counter = PassCounter()
        per_eps = [len(cfg.attacks) + (1 if k else 0) + (1 if 0 < k <= cfg.full_grad_max_k else 0)
                   for k in cfg.purify_steps]
        total = sum(per_eps) * len(cfg.eps) * cfg.restarts + (len(cfg.purify_steps) if cfg.probe else 0)
        self.bar = bar(total, f"robust {cfg.norm} ({model.info.name})", "attack", progress)
        self.transfer: dict[float, list[torch.Tensor]] = {}  # eps -> K = 0 adversarial examples

    # --- predictions under the (possibly stochastic) defense ------------------------------------------------
    def predict(self, x01: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """Correctness ``[N]`` (bool, CPU) of the prediction from logits averaged over R fresh purifications,
        batched as R replicas of each batch (noise keyed by sample index)."""
        import torch

        from ..attacks import PixelClassifier

        reps = self.cfg.eval_purifications if k else 1
        wrapper = PixelClassifier(self.model, self.cfg.purify_config(k), counter=self.eval_counter)
        out, bs = [], max(1, self.cfg.batch_size // reps)
        lo, hi = distributed.shard(len(x01), align=bs)  # whole batches per rank: the batches of one process
        before = self.eval_counter.forward, self.eval_counter.backward
        with torch.no_grad():
            for start in range(lo, hi, bs):
                xb = x01[start:start + bs]
                wrapper.key(derive_seed(self.cfg.seed, "eval-purify", k), start, len(xb))
                logits = wrapper(xb.repeat(reps, 1, 1, 1)).view(reps, len(xb), -1).mean(0)
                out.append((logits.argmax(-1) == y[start:start + bs]).cpu())
        self.eval_counter.forward = before[0] + distributed.total(self.eval_counter.forward - before[0])
        self.eval_counter.backward = before[1] + distributed.total(self.eval_counter.backward - before[1])
        return distributed.gather(torch.cat(out) if out else torch.zeros(0, dtype=torch.bool))

    def attack(self, name: str, k: int, eps: float, gradient: str, label: str, x01: torch.Tensor,
               y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, dict[str, Any]]:
        """Adversarial examples (one tensor per restart), per-image correctness after all restarts, and the
        row's bookkeeping (passes per image, seeds)."""
        import torch

        from ..attacks import PassCounter, PixelClassifier

        cfg = self.cfg
        eot = cfg.eot if k else 1
        counter = PassCounter()
        wrapper = PixelClassifier(self.model, cfg.purify_config(k), gradient=gradient, counter=counter)
        atk = build_attack(name, wrapper, norm=cfg.norm, eps=eps, steps=cfg.steps, step_size=cfg.alpha(eps), eot=eot)
        correct = torch.ones(len(x01), dtype=torch.bool)
        advs, seeds = [], []
        self.bar.set_postfix_str(f"K={k} eps={eps:.4g} {label}", refresh=False)
        eval_fwd, eval_bwd = self.eval_counter.forward, self.eval_counter.backward
        keyed = getattr(atk, "keyed", False)
        bs = max(1, cfg.batch_size // eot) if keyed else cfg.batch_size  # EOT replicas share the batch
        lo, hi = distributed.shard(len(x01), align=bs)  # whole batches per rank: the batches of one process
        for r in range(cfg.restarts):
            parts = []
            s = derive_seed(cfg.seed, "attack", cfg.norm, eps, k, label, r)
            seeds.append(s)
            for start in range(lo, hi, bs):
                xb, yb = x01[start:start + bs], y[start:start + bs]
                if keyed:
                    wrapper.key(derive_seed(s, "purify"), start, len(xb))
                    parts.append(run_attack(atk, xb, yb, s, start=start))
                else:
                    wrapper.reseed(derive_seed(s, "purify", start))
                    parts.append(run_attack(atk, xb, yb, derive_seed(s, "batch", start)))
            advs.append(distributed.gather(torch.cat(parts) if parts else x01[:0]))
            correct &= self.predict(advs[-1], y, k)
            self.bar.update(1)
        counter.forward, counter.backward = distributed.total(counter.forward), distributed.total(counter.backward)
        info = {"attack_impl": type(atk).__name__, "gradient": gradient, "eot": eot, "steps": cfg.steps,
                "step_size": cfg.alpha(eps), "restarts": cfg.restarts, "seeds": seeds,
                **self._passes(len(x01), counter.forward, counter.backward, eval_fwd, eval_bwd)}
        return advs, correct, info

    def _passes(self, n: int, attack_fwd: int, attack_bwd: int, eval_fwd: int, eval_bwd: int) -> dict[str, float]:
        """Passes per image of a row: the attack's plus its evaluation's (R purifications per restart); the
        evaluation counter's values before the row are ``eval_fwd`` / ``eval_bwd``."""
        ef, eb = self.eval_counter.forward - eval_fwd, self.eval_counter.backward - eval_bwd
        return {"fwd_per_image": (attack_fwd + ef) / n, "bwd_per_image": (attack_bwd + eb) / n,
                "eval_fwd_per_image": ef / n, "eval_bwd_per_image": eb / n}

    # --- one Evaluation per setting ------------------------------------------------------------------------
    def evaluate(self) -> list[Evaluation]:
        evs = []
        for k in self.cfg.purify_steps:
            with Timer() as t:
                ev = self._setting(k)
            ev.wall_time_s = t.seconds
            evs.append(ev)
        self.bar.close()
        return evs

    def _row(self, k: int, eps: Optional[float], attack: str, correct: torch.Tensor, **extra: Any) -> dict[str, Any]:
        """A table row; ``correct`` [N] bool is kept (as ``_correct``) for the worst case and the raw arrays."""
        from ..metrics.classification import wilson_interval

        c, n = int(correct.sum()), int(correct.numel())
        lo, hi = wilson_interval(c, n)
        scaled = None if eps is None or self.cfg.norm != "linf" else eps * 255
        return {"norm": self.cfg.norm, "eps": eps, "eps_x255": scaled, "K": k, "attack": attack, "n": n, "correct": c,
                "acc": c / n, "ci95": [lo, hi], **extra, "_correct": correct}

    def _setting(self, k: int) -> Evaluation:
        import torch

        cfg, n = self.cfg, len(self.x01)
        if k == 0:  # the shared forward pass in model space: an independent path from the pixel wrapper
            fp = self.cache.get(self.model, self.imageset, sigma=0.0, seed=cfg.seed, batch_size=cfg.batch_size,
                                progress=False)
            clean = fp.logits.argmax(-1) == fp.labels
        else:
            clean = self.predict(self.x01, self.y, k)
        rows = [self._row(k, None, "clean", clean)]
        metrics = {f"clean_acc/K={k}": rows[0]["acc"]}
        intervals = {f"clean_acc/K={k}": rows[0]["ci95"]}
        warnings: list[str] = []
        for eps in cfg.eps:
            eps_rows = []
            for name in cfg.attacks:
                label = attack_label(name, k)
                advs, correct, info = self.attack(name, k, eps, "bpda", label, self.x01, self.y)
                if k == 0:
                    self.transfer.setdefault(eps, []).extend(advs)
                eps_rows.append(self._row(k, eps, label, clean & correct, _survived=correct, **info))
            if k:
                correct = torch.ones(n, dtype=torch.bool)
                eval_fwd, eval_bwd = self.eval_counter.forward, self.eval_counter.backward
                for adv in self.transfer[eps]:
                    correct &= self.predict(adv, self.y, k)
                self.bar.update(cfg.restarts)
                eps_rows.append(self._row(k, eps, "transfer", clean & correct, _survived=correct, gradient="transfer",
                                          source="K=0 adversarials",
                                          n_sources=len(self.transfer[eps]),
                                          **self._passes(n, 0, 0, eval_fwd, eval_bwd)))
            if 0 < k <= cfg.full_grad_max_k:
                label = attack_label(cfg.attacks[0], k, "full")
                _, correct, info = self.attack(cfg.attacks[0], k, eps, "full", label, self.x01, self.y)
                eps_rows.append(self._row(k, eps, label, clean & correct, _survived=correct, **info))
            worst = clean.clone()
            for r in eps_rows:
                worst &= r["_correct"]
            eps_rows.append(self._row(k, eps, "worst", worst, gradient=None,
                                      **{key: sum(r[key] for r in eps_rows) for key in PASS_KEYS}))
            warnings += self._check(k, eps, rows[0], eps_rows, clean)
            rows += eps_rows
        for r in rows[1:]:
            name = metric_name(cfg.norm, r["eps"], k, r["attack"])
            metrics[name], intervals[name] = r["acc"], r["ci95"]
        probe = None
        if cfg.probe:
            probe, warning = self._probe(k)
            rows.append(probe)
            metrics[f"probe_acc/{cfg.norm}/{probe['eps']:.4f}/K={k}"] = probe["acc"]
            warnings += [warning] if warning else []
        return Evaluation(NAME, self.model.info.to_dict(), self._protocol(k, probe), metrics, intervals, rows,
                          warnings)

    def _probe(self, k: int) -> tuple[dict[str, Any], Optional[str]]:
        """The default attack at a very large eps on a few images: accuracy must fall to about 0."""
        cfg = self.cfg
        m = min(PROBE_N, len(self.x01))
        eps = cfg.probe_eps(tuple(self.x01.shape[1:]))
        name = cfg.attacks[0]
        label = attack_label(name, k)
        _, correct, info = self.attack(name, k, eps, "bpda", f"probe-{label}", self.x01[:m], self.y[:m])
        row = self._row(k, eps, "probe", correct, probe_attack=label, **info)
        warning = None
        if row["acc"] > PROBE_MAX_ACC:
            warning = (f"large-eps probe: accuracy {row['acc']:.3f} > {PROBE_MAX_ACC} under {label} at "
                       f"{cfg.norm} eps={eps:.3g} on {m} images; it should be about 0 (gradient masking or a broken "
                       f"attack): raise {hint(NAME, 'steps')} / {hint(NAME, 'eot')}, try "
                       f"{hint(NAME, 'attacks', 'apgd-ce')}, inspect the defense")
        return row, warning

    def _check(self, k: int, eps: float, clean: dict[str, Any], eps_rows: list[dict[str, Any]],
               clean_correct: torch.Tensor) -> list[str]:
        """The sanity warnings of one eps: eps = 0 must reproduce the clean predictions image by image (compared
        before the rows are ANDed with clean correctness); transfer must not beat the white-box attacks."""
        import torch

        out = []
        attacks = [r for r in eps_rows if r["attack"] != "worst"]
        if eps == 0:
            for r in attacks:
                survived = r.get("_survived", r["_correct"])
                if not torch.equal(survived, clean_correct):
                    out.append(f"robust accuracy at eps=0 ({survived.float().mean():.4f} under {r['attack']}, "
                               f"{int((survived != clean_correct).sum())} images changed) differs from clean accuracy "
                               f"({clean['acc']:.4f}): the attack or the pixel wrapper changes unperturbed inputs")
        white = [r for r in attacks if r["gradient"] in ("bpda", "full")]
        for r in attacks:
            if r["gradient"] == "transfer" and white and r["acc"] < min(w["acc"] for w in white):
                out.append(f"transfer attack ({r['acc']:.4f}) beats the white-box attacks (best "
                           f"{min(w['acc'] for w in white):.4f}) at eps={eps:.4g}: gradients through the defense "
                           f"mislead the attack (gradient masking); trust the worst case, raise {hint(NAME, 'eot')} / "
                           f"{hint(NAME, 'steps')}")
        return out

    def _protocol(self, k: int, probe: Optional[dict[str, Any]]) -> dict[str, Any]:
        import torchattacks

        cfg, iset = self.cfg, self.imageset
        return {
            "dataset": iset.name, "split": iset.split, "n": len(iset), "dataset_sha256": iset.fingerprint(),
            "dataset_meta": dict(iset.meta), "threat_model": cfg.norm, "eps": list(cfg.eps),
            "eps_units": "pixels in [0, 1]; attacks see [0, 1] images through model.to_model_space",
            "attacks": list(cfg.attacks), "library": f"torchattacks {torchattacks.__version__}",
            "steps": cfg.steps, "random_start": True, "restarts": cfg.restarts,
            "step_size": cfg.step_size if cfg.step_size is not None else
            ("max(2/255, 2.5*eps/steps)" if cfg.norm == "linf" else "2.5*eps/steps"),
            "K": k, "purification": cfg.purify_config(k).to_dict(),
            "eot": cfg.eot if k else 1, "eval_purifications": cfg.eval_purifications if k else 1,
            "full_gradient": bool(0 < k <= cfg.full_grad_max_k), "full_grad_max_k": cfg.full_grad_max_k,
            "transfer_source": "K=0 adversarial examples of every attack and restart" if k else None,
            "break_rule": ("wrong prediction from logits averaged over eval_purifications fresh purifications"
                           if k else "wrong prediction (deterministic model)"),
            "robust_rule": "per image: correct on the clean input and after the attack (every restart), so robust "
                           "accuracy never exceeds clean accuracy",
            "worst_case": "per image: correct on the clean input and under every attack row",
            "interval": "Wilson 95%", "test_sigma": 0.0,
            "clean_path": "shared forward pass in model space (ForwardCache)" if k == 0 else "evaluation purifications",
            "probe": None if probe is None else {"eps": probe["eps"], "n": probe["n"], "attack": probe["probe_attack"],
                                                 "max_acc": PROBE_MAX_ACC},
            "seed": cfg.seed, "seed_recipe": SEED_RECIPE, "batch_size": cfg.batch_size,
            "pass_counting": "network passes per image, counted in the wrapper (SGLD step = 1 fwd + 1 bwd per copy): "
                             "fwd/bwd_per_image = the attack's + its evaluation's (eval_*: R purifications per "
                             "restart); worst = sum of the rows",
        }


