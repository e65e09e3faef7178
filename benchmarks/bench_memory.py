"""Peak memory against N: how much the peak grows per image, against the data's own uint8 size plus per-sample
outputs (issue 15: "peak memory grows with the number of images by no more than the data's own uint8 size plus
per-sample outputs").

    .venv/bin/python benchmarks/bench_memory.py [--forward-n 3000 6000] [--robust-n 200 1200] [--only forward]

Workloads, each on a random WRN-10-1 for 3x32x32 CIFAR-format images and an in-distribution set of N random uint8
images with labels (built inside the measured process, so its uint8 is part of the growth):

- ``forward``: clf, calib (200 bootstrap resamples) and ood against the 4 synthetic sets (noise, uniform, constant,
  interp; N images each), scores logp and msp, 200 bootstrap resamples; batch 256. ``forward-noboot``: the same
  without bootstraps (what the passes and the sets hold, apart from the resampling).
- ``robust``: L-inf eps 0 and 8/255, PGD with 2 steps, K = 0 and K = 1 (2 copies, EOT 2, 2 evaluation
  purifications, so a transfer row), no full gradients, no probe; batch 64.

Each (workload, N) runs in a fresh child process; its peak is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (a
per-process high-water mark). To make that mark follow live memory rather than what the allocator keeps, children
run with glibc's ``MALLOC_MMAP_THRESHOLD_=65536`` (every tensor above 64 KB is its own mapping, returned to the
system when freed), ``MALLOC_TRIM_THRESHOLD_=0``, ``MALLOC_ARENA_MAX=2`` and one torch thread. Growth per image =
(peak(N2) - peak(N1)) / (N2 - N1). The budget per image: the in-distribution set's uint8 (3072 B) plus the
per-sample outputs (forward: logits, log p~ and labels of each of the 5 sets, 3 scores per set in float32 and
float64 copies; robust: labels and one bool per row). Both N of a workload must be at least its batch size, and
for forward at least 2048 (two synthetic chunks), or the growth measures batches and chunks filling up, not N.
Likewise the OOD bootstrap draws its resamples in blocks of at most ``metrics.ood.BOOTSTRAP_BLOCK_VALUES`` (2^21)
values: below N = 2^21 / 200 (about 10.5k) ``forward`` also measures that block filling up; give
``--forward-n 12000 18000`` to see past it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

IMAGE_BYTES = 3 * 32 * 32
CLASSES = 10
ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "2",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SETS = "noise,uniform,constant,interp"
SCORES = "logp,msp"


def outputs_per_image(kind: str) -> int:
    """Bytes of per-sample outputs per image index (an upper estimate, see the module docstring)."""
    if kind.startswith("forward"):
        sets = 1 + len(SETS.split(","))
        return 8 + sets * (CLASSES * 4 + 4 + len(SCORES.split(",")) * (4 + 8))
    rows = 1 + 2 * 2 + 2 * (2 + 1) + 2 * (1 + 1)  # clean x2, K=0: (pgd, worst) x 2 eps, K=1: (bpda, transfer, worst)
    return 8 + rows


def child(kind: str, n: int) -> None:
    import torch

    torch.set_num_threads(1)
    import jembench
    from jembench.data.imageset import ImageSet
    from jembench.models.hybrid import HybridModel, ModelInfo
    from jembench.models.wrn import JEMNet

    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=CLASSES,
                     in_channels=3, image_size=(32, 32), depth=10, width=1, norm="none", dataset="cifar10",
                     name="random-wrn-10-1")
    model = HybridModel(JEMNet(10, 1, "none", 3, CLASSES), info).eval()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    data = ImageSet("cifar10", "test", images, torch.randint(0, CLASSES, (n,), generator=g), CLASSES)
    if kind.startswith("forward"):
        kw = dict(dataset=data, n=None, batch_size=256, progress=False)
        boot = 0 if kind == "forward-noboot" else 200
        jembench.clf(model, **kw)
        jembench.calib(model, bootstrap=boot, **kw)
        jembench.ood(model, out=SETS, scores=SCORES, bootstrap=boot, figures=False, **kw)
    else:
        jembench.robust(model, dataset=data, n=n, eps="0,8/255", steps=2, purify_steps="0,1", purify_copies=2, eot=2,
                        eval_purifications=2, full_grad_max_k=0, probe=False, batch_size=64, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"kind": kind, "n": n, "peak_kib": peak, "before_kib": base}))


def measure(kind: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], check=True, capture_output=True,
                         text=True, env={**os.environ, **ENV}).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(kind: str, ns: list[int]) -> None:
    a, b = (measure(kind, n) for n in ns)
    per_image = (b["peak_kib"] - a["peak_kib"]) * 1024 / (b["n"] - a["n"])
    budget = IMAGE_BYTES + outputs_per_image(kind)
    for r in (a, b):
        print(f"{kind} N={r['n']}: peak RSS {r['peak_kib'] / 1024:.1f} MiB (after the model: "
              f"{r['before_kib'] / 1024:.1f} MiB)")
    print(f"{kind}: peak growth per image {per_image:.0f} B; budget: uint8 data {IMAGE_BYTES} B + per-sample outputs "
          f"{outputs_per_image(kind)} B = {budget} B; ratio {per_image / budget:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forward-n", type=int, nargs=2, default=[3000, 6000])
    ap.add_argument("--robust-n", type=int, nargs=2, default=[200, 1200])
    ap.add_argument("--only", choices=("forward", "forward-noboot", "robust"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    for kind, ns in (("forward", args.forward_n), ("forward-noboot", args.forward_n), ("robust", args.robust_n)):
        if args.only in (None, kind):
            report(kind, ns)


if __name__ == "__main__":
    main()
