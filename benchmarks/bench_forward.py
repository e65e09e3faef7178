"""Throughput of the shared forward pass (images/s) on digits, and of the calibration metrics on N samples.

    python benchmarks/bench_forward.py                       # WRN-10-1 and WRN-28-2 on digits, CPU
    python benchmarks/bench_forward.py --arch 28-10 --device cuda --batch-size 512
    python benchmarks/bench_forward.py --refine-steps 5      # JEM-K refinement cost

Each configuration: one warm-up pass, then the median of ``--repeats`` timed passes through a fresh
ForwardCache (so nothing is served from the cache). Random weights: speed does not depend on training.
"""

from __future__ import annotations

import argparse
import time

import torch

from jembench.data import get_dataset
from jembench.evaluators.calib import calib_evaluation
from jembench.forward import ForwardCache, ForwardPass
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.runtime import resolve_device
from jembench.sampling.sgld import SGLDConfig

from common import median_seconds, random_digits_model


def time_pass(model: HybridModel, data, *, sigma: float, refine, batch_size: int, repeats: int) -> float:
    ForwardCache().get(model, data, sigma=sigma, refine=refine, batch_size=batch_size, progress=False)  # warm-up
    return median_seconds(lambda: ForwardCache().get(model, data, sigma=sigma, refine=refine, batch_size=batch_size,
                                                    progress=False), repeats, model.device)


def time_calibration(n: int, bootstrap: int) -> float:
    """Seconds for the calib metrics (5 errors, bootstrap, temperature reference) on N random predictions."""
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(n, 10, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    fp = ForwardPass(logits, logits.logsumexp(-1), labels, "bench", {"dataset": "synthetic", "split": "test", "n": n})

    class _Set:  # the evaluator reads only .meta from the image set
        meta: dict = {}

    class _Model:
        info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10,
                         in_channels=1, image_size=(8, 8), name="bench")

    start = time.perf_counter()
    calib_evaluation(fp, _Model(), _Set(), seed=0, bins=15, bootstrap=bootstrap, level=0.95, ts_fraction=0.5)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", action="append", help="DEPTH-WIDTH, repeatable (default 10-1 and 28-2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--refine-steps", type=int, default=0)
    ap.add_argument("--calib-n", type=int, default=10000, help="samples for the calibration-metrics timing (0: skip)")
    ap.add_argument("--calib-bootstrap", type=int, default=1000)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = get_dataset("digits", "test")
    print(f"device {device}, torch threads {torch.get_num_threads()}, digits test N={len(data)}, "
          f"batch {args.batch_size}, median of {args.repeats}")
    refine = SGLDConfig(steps=args.refine_steps, step_size=1.0, noise=0.01) if args.refine_steps else None
    for arch in args.arch or ["10-1", "28-2"]:
        depth, width = (int(v) for v in arch.split("-"))
        model = random_digits_model(depth, width, device)
        for sigma in (0.0, 0.03):
            sec = time_pass(model, data, sigma=sigma, refine=refine, batch_size=args.batch_size,
                            repeats=args.repeats)
            tag = f" refine K={args.refine_steps}" if refine else ""
            print(f"WRN-{depth}-{width} sigma={sigma:<4}{tag}: {len(data) / sec:9.0f} images/s ({sec * 1e3:.0f} ms)")
    if args.calib_n:
        sec = time_calibration(args.calib_n, args.calib_bootstrap)
        print(f"calib metrics on N={args.calib_n}, bootstrap {args.calib_bootstrap}: {sec:.2f} s")


if __name__ == "__main__":
    main()
