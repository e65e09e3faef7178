"""Time of `jembench.ood` on the demo digits checkpoint, split into forward, gradient, metric and figure work,
against one bare forward pass over the same images.

    .venv/bin/python benchmarks/bench_ood.py [--ckpt checkpoints/jem-digits.pt] [--repeats 3] [--device cpu]

Without the demo checkpoint a random WRN-10-1 of the same shape (1x8x8, 10 classes) stands in (the timing depends
on the architecture, not on the weights). Images: digits test (360) + the digits OOD preset (5 x 360).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from jembench.data import get_dataset
from jembench.data.ood_sets import load_ood_set
from jembench.evaluators.ood import PRESETS as OOD_PRESETS
from jembench.evaluators.ood import ood
from jembench.forward import ForwardCache
from jembench.models.hybrid import HybridModel

from common import DEMO, demo_model

def bare_forward(model: HybridModel, sets, batch_size: int) -> float:
    """One no-grad pass over every set: the floor any evaluator pays."""
    start = time.perf_counter()
    with torch.no_grad():
        for s in sets:
            for x, _ in s.batches(batch_size, model, model.device):
                model.logits_and_log_px(x)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=DEMO)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out-dir", type=Path, default=None, help="also time figures (written here)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = demo_model(args.ckpt, args.device)
    in_set = get_dataset("digits", "test")
    sets = [in_set] + [load_ood_set(o, in_set, (1, 8, 8)) for o in OOD_PRESETS["digits"]]
    bare_forward(model, sets, args.batch_size)  # warm-up
    runs = []
    for _ in range(args.repeats):
        bare = bare_forward(model, sets, args.batch_size)
        cache = ForwardCache()
        r = ood(model, "digits", "digits", sigma=0.0, batch_size=args.batch_size, cache=cache, out_dir=args.out_dir,
                figures=args.out_dir is not None, progress=False)
        again = ood(model, "digits", "digits", scores=["logp", "msp", "maxlogit", "energy-T"],
                    batch_size=args.batch_size, cache=cache, progress=False).timings[0]
        runs.append({"bare_forward_s": bare, **r.timings[0], "model_calls": cache.model_calls,
                     "cached_rerun_forward_s": again["forward_s"]})
    median = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    print(json.dumps({"model": model.info.name, "device": str(model.device), "threads": args.threads,
                      "images": sum(len(s) for s in sets), "sets": len(sets), "repeats": args.repeats,
                      "median": median, "ratio_forward_to_bare": median["forward_s"] / median["bare_forward_s"],
                      "ratio_gradient_to_bare": median["gradient_s"] / median["bare_forward_s"]}, indent=2))


if __name__ == "__main__":
    main()
