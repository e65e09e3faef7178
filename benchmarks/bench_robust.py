"""Speed of the robust evaluator's attacks: images per second of the default attack (PGD L-inf, eps 8/255,
default steps) undefended (K = 0) and with JEM-10 purification (BPDA + EOT), and how the cost grows with K and
with the number of EOT copies.

    .venv/bin/python benchmarks/bench_robust.py [--ckpt checkpoints/jem-digits.pt] [--device cpu] [--threads 1]

Without the demo checkpoint a random WRN-10-2 for 1x8x8 digits is used. Each row times one attack call on
``--n`` test images (median of ``--repeats``) and reports images/s and network passes per image (the wrapper's
counters). The ``evaluation`` rows time deciding a break (logits averaged over R fresh purifications, no
gradients), which the evaluator adds once per attack row and restart.
"""

from __future__ import annotations

import argparse
import json

import torch

from jembench.evaluators.robust import RobustSettings
from jembench.attacks import PassCounter, PixelClassifier, PurifyConfig, build_attack, run_attack
from jembench.data import get_dataset
from jembench.models.hybrid import HybridModel
from jembench.runtime import resolve_device

from common import demo_model, median_seconds


DEFAULTS = RobustSettings()  # jembench robust's defaults

def purifier(k: int) -> PurifyConfig:
    return PurifyConfig(k, DEFAULTS.purify_step_size, DEFAULTS.purify_noise, DEFAULTS.purify_copies,
                        DEFAULTS.purify_sigma)


def time_attack(model: HybridModel, x: torch.Tensor, y: torch.Tensor, *, k: int, eot: int, steps: int,
                repeats: int, gradient: str = "bpda") -> dict:
    purify = purifier(k)
    counter = PassCounter()
    wrapper = PixelClassifier(model, purify, gradient=gradient, counter=counter)
    atk = build_attack("pgd", wrapper, norm="linf", eps=8 / 255, steps=steps, eot=eot if k else 1)

    def attack() -> None:
        counter.reset()
        run_attack(atk, x, y, 0)

    seconds = median_seconds(attack, repeats, x.device)
    n = len(x)
    return {"K": k, "eot": eot if k else 1, "copies": purify.copies if k else 1, "gradient": gradient,
            "steps": steps, "n": n, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 3),
            "fwd_per_image": counter.forward / n, "bwd_per_image": counter.backward / n}


def time_evaluation(model: HybridModel, x: torch.Tensor, *, k: int, purifications: int, repeats: int) -> dict:
    """Deciding a break: logits averaged over ``purifications`` fresh purifications (K = 0: one pass)."""
    counter = PassCounter()
    wrapper = PixelClassifier(model, purifier(k), counter=counter)
    reps = purifications if k else 1

    def evaluate() -> None:
        counter.reset()
        with torch.no_grad():
            sum(wrapper(x) for _ in range(reps))

    seconds = median_seconds(evaluate, repeats, x.device)
    n = len(x)
    return {"K": k, "purifications": reps, "n": n, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 3),
            "fwd_per_image": counter.forward / n, "bwd_per_image": counter.backward / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=32, help="images per timed attack")
    ap.add_argument("--steps", type=int, default=DEFAULTS.steps)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--scaling-steps", type=int, default=5, help="attack steps of the K / EOT scaling rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = demo_model(args.ckpt, device, fallback_width=2)
    data = get_dataset("digits", "test").first(args.n)
    x, y = data.pixels01().to(device), data.labels.to(device)
    rows = {"model": model.info.name, "device": str(device), "threads": args.threads, "default": [], "by_K": [],
            "by_eot": [], "full_grad": [], "evaluation": []}
    for k in (0, 10):  # the default attack, undefended and JEM-10 (default copies and EOT)
        rows["default"].append(time_attack(model, x, y, k=k, eot=DEFAULTS.eot, steps=args.steps,
                                           repeats=args.repeats))
        print(json.dumps(rows["default"][-1]), flush=True)
    for k in (0, 1, 2, 5, 10):
        rows["by_K"].append(time_attack(model, x, y, k=k, eot=1, steps=args.scaling_steps, repeats=args.repeats))
        print(json.dumps(rows["by_K"][-1]), flush=True)
    for eot in (1, 5, 15):
        rows["by_eot"].append(time_attack(model, x, y, k=1, eot=eot, steps=args.scaling_steps, repeats=args.repeats))
        print(json.dumps(rows["by_eot"][-1]), flush=True)
    for k in (1, 2):
        rows["full_grad"].append(time_attack(model, x, y, k=k, eot=1, steps=args.scaling_steps, repeats=args.repeats,
                                             gradient="full"))
        print(json.dumps(rows["full_grad"][-1]), flush=True)
    for k in (0, 10):
        rows["evaluation"].append(time_evaluation(model, x, k=k, purifications=DEFAULTS.eval_purifications,
                                                  repeats=args.repeats))
        print(json.dumps(rows["evaluation"][-1]), flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
