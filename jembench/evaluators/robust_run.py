"""The adaptive robustness evaluation of one model under one threat model: every attack, eps and JEM-K setting.

:class:`ModelRun` runs the attacks of :mod:`jembench.evaluators.robust` (see its docstring for the rows, the break
rule and the sanity checks) on one model and evaluation set, under one
:class:`~jembench.evaluators.robust_config.RobustConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional

from .. import distributed
from ..attacks import build_attack, run_attack
from ..progress import bar
from ..results import Evaluation
from ..rng import RECIPE
from ..runtime import derive_seed
from ..settings import hint
from .common import Timer
from .robust_config import PROBE_N, RobustConfig, attack_label, metric_name

if TYPE_CHECKING:  # torch-backed: imported where used, so the robust evaluator's settings stay light
    import torch

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
BATCH_RULE = ("batch = batch_size (attacks: batch // eot images, each stacked eot times; evaluation: batch // R "
              "images, each stacked R times; each row purified as `copies` copies at K > 0); under --batch-size auto "
              "batch_size is the probed rows of one forward + input-gradient pass and batch = batch_size // (copies "
              "at K > 0, times 1 + 2K for full gradients), so no pass stacks more rows than the probe fitted")
PROBE_MAX_ACC = 0.1  # probe accuracy above this raises a warning (gradient masking or a broken attack)


class ModelRun:
    """All settings and budgets for one model and evaluation set.

    Memory: the evaluation set stays the set's own uint8 images on the CPU; each batch goes to the device as
    float32 in [0, 1]. Adversarial examples live one batch at a time: each batch is judged (R purifications) as it is
    made. The transfer rows of K > 0 re-make the K = 0 adversarial examples batch by batch from their seeds (the
    same keyed draws, batches and seeds as the K = 0 rows, so the same images) instead of holding them for every
    eps, attack and restart; their rows count those attack passes."""

    def __init__(self, model: HybridModel, imageset: ImageSet, cfg: RobustConfig, cache: ForwardCache,
                 progress: bool):

        from ..attacks import PassCounter

        self.model, self.imageset, self.cfg, self.cache = model, imageset, cfg, cache
        self.x8 = imageset.images  # uint8, CPU: the set's own tensor, no copy
        self.y = imageset.labels.to(model.device)
        self.eval_counter = PassCounter()
        per_eps = [len(cfg.attacks) + (1 if k else 0) + (1 if 0 < k <= cfg.full_grad_max_k else 0)
                   for k in cfg.purify_steps]
        total = sum(per_eps) * len(cfg.eps) * cfg.restarts + (len(cfg.purify_steps) if cfg.probe else 0)
        self.bar = bar(total, f"robust {cfg.norm} ({model.info.name})", "attack", progress)

    def pixels(self, x8: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Images ``[start, stop)`` of uint8 ``x8`` as float32 in [0, 1] on the model's device."""
        import torch

        from ..runtime import to_device

        return to_device(x8[start:stop].to(torch.float32) / 255.0, self.model.device)

    # --- predictions under the (possibly stochastic) defense ------------------------------------------------
    def judge(self, x01: torch.Tensor, y: torch.Tensor, start: int, k: int) -> torch.Tensor:
        """Correctness ``[B]`` (bool, CPU) of images ``x01`` (samples ``start..`` of the set, on the device) from
        logits averaged over R fresh purifications, batched as R replicas of ``batch_size // R`` images (noise
        keyed by sample index)."""
        import torch

        from ..attacks import PixelClassifier

        reps = self.cfg.eval_purifications if k else 1
        wrapper = PixelClassifier(self.model, self.cfg.purify_config(k), counter=self.eval_counter)
        out, bs = [], max(1, self.cfg.batch(k) // reps)
        with torch.no_grad():
            for lo in range(0, len(x01), bs):
                xb = x01[lo:lo + bs]
                wrapper.key(derive_seed(self.cfg.seed, "eval-purify", k), start + lo, len(xb))
                logits = wrapper(xb.repeat(reps, 1, 1, 1)).view(reps, len(xb), -1).mean(0)
                out.append((logits.argmax(-1) == y[lo:lo + bs]).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)

    def predict(self, x8: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """:meth:`judge` of the clean uint8 images ``x8``, over this rank's whole batches, gathered."""
        bs = max(1, self.cfg.batch(k) // (self.cfg.eval_purifications if k else 1))
        lo, hi = distributed.shard(len(x8), align=bs)  # whole batches per rank: the batches of one process
        parts = [self.judge(self.pixels(x8, s, s + bs), y[s:s + bs], s, k) for s in range(lo, hi, bs)]
        return self._gather(parts)

    def attacker(self, name: str, k: int, eps: float, gradient: str, counter: Any) -> tuple[Any, Any, bool, int]:
        """``(wrapper, attack, keyed, images per batch)`` of one row (EOT replicas share the batch)."""
        from ..attacks import PixelClassifier

        cfg = self.cfg
        eot = cfg.eot if k else 1
        wrapper = PixelClassifier(self.model, cfg.purify_config(k), gradient=gradient, counter=counter)
        atk = build_attack(name, wrapper, norm=cfg.norm, eps=eps, steps=cfg.steps, step_size=cfg.alpha(eps), eot=eot)
        keyed = getattr(atk, "keyed", False)
        bs = cfg.batch(k, gradient)
        return wrapper, atk, keyed, max(1, bs // eot) if keyed else bs

    def adversarials(self, attacker: tuple[Any, Any, bool, int], seed: int, x8: torch.Tensor,
                     y: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, adversarial batch on the device)`` over this rank's whole batches, attack seed ``seed``."""
        wrapper, atk, keyed, bs = attacker
        lo, hi = distributed.shard(len(x8), align=bs)  # whole batches per rank: the batches of one process
        for start in range(lo, hi, bs):
            xb, yb = self.pixels(x8, start, start + bs), y[start:start + bs]
            if keyed:
                wrapper.key(derive_seed(seed, "purify"), start, len(xb))
                yield start, run_attack(atk, xb, yb, seed, start=start)
            else:
                wrapper.reseed(derive_seed(seed, "purify", start))
                yield start, run_attack(atk, xb, yb, derive_seed(seed, "batch", start))

    def survivors(self, attacker: tuple[Any, Any, bool, int], seed: int, x8: torch.Tensor, y: torch.Tensor,
                  k: int) -> torch.Tensor:
        """Per-image correctness ``[N]`` under setting ``k`` after the attack of seed ``seed``, judged batch by
        batch as the adversarial examples are made (none is kept), gathered from every rank."""
        parts = [self.judge(adv, y[start:start + len(adv)], start, k)
                 for start, adv in self.adversarials(attacker, seed, x8, y)]
        return self._gather(parts)

    @staticmethod
    def _gather(parts: list[torch.Tensor]) -> torch.Tensor:
        import torch

        return distributed.gather(torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool))

    def attack(self, name: str, k: int, eps: float, gradient: str, label: str, x8: torch.Tensor,
               y: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per-image correctness after all restarts (a point is broken if any restart breaks it) and the row's
        bookkeeping (passes per image, seeds)."""
        import torch

        from ..attacks import PassCounter

        cfg = self.cfg
        counter = PassCounter()
        attacker = self.attacker(name, k, eps, gradient, counter)
        correct = torch.ones(len(x8), dtype=torch.bool)
        seeds = [derive_seed(cfg.seed, "attack", cfg.norm, eps, k, label, r) for r in range(cfg.restarts)]
        self.bar.set_postfix_str(f"K={k} eps={eps:.4g} {label}", refresh=False)
        before = self.eval_counter.forward, self.eval_counter.backward
        for s in seeds:
            correct &= self.survivors(attacker, s, x8, y, k)
            self.bar.update(1)
        info = {"attack_impl": type(attacker[1]).__name__, "gradient": gradient, "eot": cfg.eot if k else 1,
                "steps": cfg.steps, "step_size": cfg.alpha(eps), "restarts": cfg.restarts, "seeds": seeds,
                **self._passes(len(x8), counter, before)}
        return correct, info

    def transfer(self, k: int, eps: float) -> tuple[torch.Tensor, dict[str, Any]]:
        """Correctness under setting ``k`` of the K = 0 adversarial examples of every attack and restart at ``eps``
        (re-made from their seeds, batch by batch) and the row's passes (the re-made attacks' and the judging)."""
        import torch

        from ..attacks import PassCounter

        cfg, counter = self.cfg, PassCounter()
        correct = torch.ones(len(self.x8), dtype=torch.bool)
        before = self.eval_counter.forward, self.eval_counter.backward
        for name in cfg.attacks:
            attacker = self.attacker(name, 0, eps, "bpda", counter)
            for r in range(cfg.restarts):
                s = derive_seed(cfg.seed, "attack", cfg.norm, eps, 0, attack_label(name, 0), r)
                correct &= self.survivors(attacker, s, self.x8, self.y, k)
        self.bar.update(cfg.restarts)
        return correct, self._passes(len(self.x8), counter, before)

    def _passes(self, n: int, counter: Any, before: tuple[int, int]) -> dict[str, float]:
        """Passes per image of a row, summed over ranks: its attacks' (``counter``) plus its evaluation's (R
        purifications per restart); the evaluation counter's values before the row are ``before``."""
        total = distributed.total
        ef, eb = total(self.eval_counter.forward - before[0]), total(self.eval_counter.backward - before[1])
        af, ab = total(counter.forward), total(counter.backward)
        return {"fwd_per_image": (af + ef) / n, "bwd_per_image": (ab + eb) / n,
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

        cfg = self.cfg
        if k == 0:  # the shared forward pass in model space: an independent path from the pixel wrapper
            fp = self.cache.get(self.model, self.imageset, sigma=0.0, seed=cfg.seed, batch_size=cfg.batch_size,
                                progress=False)
            clean = fp.logits.argmax(-1) == fp.labels
        else:
            clean = self.predict(self.x8, self.y, k)
        rows = [self._row(k, None, "clean", clean)]
        metrics = {f"clean_acc/K={k}": rows[0]["acc"]}
        intervals = {f"clean_acc/K={k}": rows[0]["ci95"]}
        warnings: list[str] = []
        for eps in cfg.eps:
            eps_rows = []
            for name in cfg.attacks:
                label = attack_label(name, k)
                correct, info = self.attack(name, k, eps, "bpda", label, self.x8, self.y)
                eps_rows.append(self._row(k, eps, label, clean & correct, _survived=correct, **info))
            if k:
                correct, passes = self.transfer(k, eps)
                eps_rows.append(self._row(k, eps, "transfer", clean & correct, _survived=correct, gradient="transfer",
                                          source="K=0 adversarials (re-made from their seeds)",
                                          n_sources=len(cfg.attacks) * cfg.restarts, **passes))
            if 0 < k <= cfg.full_grad_max_k:
                label = attack_label(cfg.attacks[0], k, "full")
                correct, info = self.attack(cfg.attacks[0], k, eps, "full", label, self.x8, self.y)
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
        m = min(PROBE_N, len(self.x8))
        eps = cfg.probe_eps(tuple(self.x8.shape[1:]))
        name = cfg.attacks[0]
        label = attack_label(name, k)
        correct, info = self.attack(name, k, eps, "bpda", f"probe-{label}", self.x8[:m], self.y[:m])
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
            "batch_size_auto": cfg.batch_auto, "batch_rule": BATCH_RULE, "batch": cfg.batch(k),
            "batch_full_grad": cfg.batch(k, "full") if 0 < k <= cfg.full_grad_max_k else None,
            "pass_counting": "network passes per image, counted in the wrapper (SGLD step = 1 fwd + 1 bwd per copy): "
                             "fwd/bwd_per_image = the attack's + its evaluation's (eval_*: R purifications per "
                             "restart); worst = sum of the rows",
        }


