"""Sampler throughput: SGLD steps per second (chains x steps / s) and JEM++'s per-class Gaussian initialisation.

    python benchmarks/bench_sampling.py                        # WRN-10-1 on 1x8x8 digits, 64 chains
    python benchmarks/bench_sampling.py --arch 28-10 --shape 3,32,32 --chains 64 --device cuda   # JEM's CIFAR model

Random weights (speed does not depend on them). Reports the median of ``--repeats`` runs of ``--steps`` steps.
"""

from __future__ import annotations

import argparse

import torch

from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet
from jembench.runtime import generator, resolve_device
from jembench.sampling import GaussianInit, JEMPPConfig, SGLDConfig, jempp_sample, sgld_sample

from common import median_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="10-1", help="WRN depth-width")
    ap.add_argument("--norm", default="none")
    ap.add_argument("--shape", default="1,8,8", help="C,H,W")
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    depth, width = (int(v) for v in args.arch.split("-"))
    c, h, w = (int(v) for v in args.shape.split(","))
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=c,
                     image_size=(h, w), depth=depth, width=width, norm=args.norm)
    model = HybridModel(JEMNet(depth, width, args.norm, c, 10), info).to(dev)
    gen = generator(0, dev)
    x0 = torch.rand(args.chains, c, h, w, generator=gen, device=dev) * 2 - 1
    sgld = median_seconds(lambda: sgld_sample(model, x0, SGLDConfig(steps=args.steps), gen), args.repeats, dev)
    jpp_cfg = JEMPPConfig(outer_steps=args.steps // 5 or 1)
    jpp = median_seconds(lambda: jempp_sample(model, x0, jpp_cfg, gen), args.repeats, dev)
    d = c * h * w
    a = torch.randn(10, d, d // 4, generator=generator(1)) / d ** 0.5
    init = GaussianInit(torch.zeros(10, d), a @ a.transpose(1, 2), (c, h, w))
    init.means, init.chol = init.means.to(dev), init.chol.to(dev)
    gauss = median_seconds(lambda: init(args.chains, gen), args.repeats, dev)
    print(f"device {dev}, WRN-{args.arch} norm {args.norm}, input {c}x{h}x{w}, {args.chains} chains")
    print(f"SGLD   {args.steps} steps: {sgld:.3f} s  ({args.chains * args.steps / sgld:,.0f} chain-steps/s)")
    print(f"JEM++  {jpp_cfg.outer_steps} gradients x {jpp_cfg.inner_steps} moves: {jpp:.3f} s")
    print(f"GaussianInit ({d}-dim, 10 classes): {gauss * 1e3:.1f} ms per {args.chains} draws")


if __name__ == "__main__":
    main()
