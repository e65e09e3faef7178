"""Peak memory of clf + calib + ood against N: how much the peak grows per image, against the data's uint8 size.

    .venv/bin/python benchmarks/bench_memory.py [--n 1000 4000] [--sets noise,uniform,constant,interp]

Each N runs in a fresh child process (peak RSS, ``resource.getrusage``, is a per-process high-water mark): a random
WRN-10-1 for 3x32x32 CIFAR-format images, an in-distribution set of N random uint8 images, the synthetic OOD sets
(N images each), scores logp and msp, bootstraps of 200. The growth per image is (peak(N2) - peak(N1)) / (N2 - N1);
the budget (issue 15) is the uint8 size of everything held per image index (in set + OOD sets: 3072 B each) plus
the per-sample outputs (logits, log p, scores: well under 1 KB).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

IMAGE_BYTES = 3 * 32 * 32


def child(n: int, sets: str) -> None:
    import torch

    import jembench
    from jembench.data.imageset import ImageSet
    from jembench.models.hybrid import HybridModel, ModelInfo
    from jembench.models.wrn import JEMNet

    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=3,
                     image_size=(32, 32), depth=10, width=1, norm="none", dataset="cifar10", name="random-wrn-10-1")
    model = HybridModel(JEMNet(10, 1, "none", 3, 10), info).eval()
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    data = ImageSet("cifar10", "test", images, torch.randint(0, 10, (n,), generator=g), 10)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kw = dict(dataset=data, n=None, batch_size=256, progress=False)
    jembench.clf(model, **kw)
    jembench.calib(model, bootstrap=200, **kw)
    jembench.ood(model, out=sets, scores="logp,msp", bootstrap=200, figures=False, **kw)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "peak_kib": peak, "before_kib": base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs=2, default=[1000, 4000])
    ap.add_argument("--sets", default="noise,uniform,constant,interp")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.sets)
    runs = []
    for n in args.n:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--sets", args.sets], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(f"N={n}: peak RSS {runs[-1]['peak_kib'] / 1024:.1f} MiB")
    (a, b) = runs
    per_image = (b["peak_kib"] - a["peak_kib"]) * 1024 / (b["n"] - a["n"])
    held = 1 + len(args.sets.split(","))
    print(f"peak growth per image index: {per_image:.0f} B; uint8 data per image index: {held} sets x "
          f"{IMAGE_BYTES} B = {held * IMAGE_BYTES} B; ratio {per_image / (held * IMAGE_BYTES):.2f}")


if __name__ == "__main__":
    main()
