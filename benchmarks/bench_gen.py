"""Speed of `jembench.gen` on the demo digits checkpoint: SGLD throughput (chain-steps per second, i.e. samples per
second per SGLD step) at several chain batch sizes, and the time split between sampling, feature extraction
(the digits-wrn extractor) and the metrics themselves.

    .venv/bin/python benchmarks/bench_gen.py [--ckpt checkpoints/jem-digits.pt] [--n 1000] [--steps 40] [--threads 1]

Without the demo checkpoint a random WRN-10-2 of the same input shape (1x8x8, 10 classes) stands in (the timing
depends on the architecture, not on the weights).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from jembench.data import get_dataset
from jembench.generation import generate, make_protocol
from jembench.metrics import fidelity

from common import DEMO, demo_model, sync

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=DEMO)
    ap.add_argument("--n", type=int, default=1000, help="samples (fresh chains)")
    ap.add_argument("--steps", type=int, default=40, help="SGLD steps per chain")
    ap.add_argument("--batch-sizes", default="64,256,1000", help="chain batch sizes for the throughput sweep")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; on a shared, loaded machine 1 is much faster)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = demo_model(args.ckpt, args.device, fallback_width=2)
    dev = model.device
    out: dict = {"model": model.info.name, "device": str(dev), "threads": torch.get_num_threads(), "n": args.n,
                 "steps": args.steps, "throughput": []}
    proto = make_protocol("sgld", steps=args.steps)
    generate(model, make_protocol("sgld", steps=1), 64, batch_size=64, progress=False)  # warm-up
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        sync(dev)
        s = generate(model, proto, args.n, batch_size=bs, progress=False)
        sync(dev)
        out["throughput"].append({"batch_size": bs, "sampling_s": s.seconds,
                                  "chain_steps_per_s": s.chain_steps / s.seconds})
    samples = s.images

    ext = fidelity.resolve_extractor("auto", model.info.dataset or "digits")
    train = get_dataset("digits", "train")
    t0 = time.perf_counter()
    real, _ = fidelity.reference_features(train, ext, cache_dir=None, device=dev)  # uncached: the first-run cost
    t1 = time.perf_counter()
    fake = fidelity.extract(ext, samples, device=dev)
    t2 = time.perf_counter()
    out["split"] = {"sampling_s": out["throughput"][-1]["sampling_s"], "sample_features_s": t2 - t1,
                    "reference_features_s (uncached)": t1 - t0}
    for metric in fidelity.METRICS:
        t = time.perf_counter()
        fidelity.fidelity_metrics(fake, real, ext, metrics=[metric])
        out["split"][f"metric_{metric}_s"] = time.perf_counter() - t
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['model']} on {out['device']} ({out['threads']} threads): {args.n} fresh SGLD chains x "
          f"{args.steps} steps")
    for row in out["throughput"]:
        print(f"  chain batch {row['batch_size']:>5}: {row['sampling_s']:7.2f} s  "
              f"{row['chain_steps_per_s']:9.0f} samples/s per SGLD step")
    total = sum(v for k, v in out["split"].items() if "uncached" not in k)
    print(f"time split of one gen run (batch {out['throughput'][-1]['batch_size']}):")
    for k, v in out["split"].items():
        share = f"{100 * v / total:5.1f}%" if "uncached" not in k else "  (once per dataset, then cached)"
        print(f"  {k:<34} {v:7.3f} s {share}")


if __name__ == "__main__":
    main()
