"""AIS throughput against a bare MALA loop on the same model, and the wall time of `density` in the quick preset.

    python benchmarks/bench_density.py                     # the bundled jem-digits.pt (WRN-10-1, 1x8x8), CPU
    python benchmarks/bench_density.py --chains 64 --steps 200 --device cuda --skip-quick

AIS chain-steps per second (chains x distributions / s, one MALA transition per distribution) against
``mcmc_sample`` with MALA for as many steps on the same chains (goal: AIS >= 0.9x the bare loop: its weights
reuse the log p~ the MALA step already computed). Then `density` with the quick preset's settings on both demo
checkpoints (goal: <= 30 s on 2 cores). Prints the load average: timings under load are not comparable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from jembench.evaluators.density import density
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet
from jembench.presets import get_preset
from jembench.runtime import generator, resolve_device
from jembench.sampling.ais import ais, sigmoid_schedule
from jembench.sampling.mcmc import MALAConfig, input_box, mcmc_sample

from common import DEMO, demo_model, median_seconds


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is less sensitive to other jobs on the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def random_model(arch: str, shape: str, device) -> HybridModel:
    depth, width = (int(v) for v in arch.split("-"))
    c, h, w = (int(v) for v in shape.split(","))
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=c,
                     image_size=(h, w), depth=depth, width=width, norm="none", name=f"random WRN-{arch}")
    return HybridModel(JEMNet(depth, width, "none", c, 10), info).to(device).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: checkpoints/jem-digits.pt")
    ap.add_argument("--arch", default=None, help="a random WRN depth-width instead (e.g. 28-10), with --shape")
    ap.add_argument("--shape", default="3,32,32", help="C,H,W of --arch")
    ap.add_argument("--chains", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="AIS distributions = bare MALA steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-quick", action="store_true", help="only the AIS / MALA comparison")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (on a loaded machine, 1 "
                                                               "avoids threads spinning against other jobs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    model = random_model(args.arch, args.shape, dev) if args.arch else demo_model(args.checkpoint, dev)
    lo, hi = (b.to(dev) for b in input_box(model.info))
    shape = (args.chains, model.info.in_channels, *model.info.image_size)
    x0 = lo + (hi - lo) * torch.rand(shape, generator=generator(0), device="cpu").to(dev)
    log_p = lambda x, y=None: model.log_px(x)  # noqa: E731
    betas = sigmoid_schedule(args.steps)
    run_ais = lambda: ais(model, x0, betas, generator(1, dev), step_size=1e-3, box=(lo, hi),  # noqa: E731
                          log_density=log_p)
    cfg = MALAConfig(steps=args.steps, step_size=1e-3)
    run_mala = lambda: mcmc_sample(model, x0, cfg, generator(1, dev), value_range=(lo, hi),  # noqa: E731
                                   log_density=log_p)
    median_seconds(run_mala, 1, dev)  # warm-up: first calls build the backend's kernels
    times = {"AIS": [], "bare MALA": []}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        times["AIS"].append(timed(run_ais))
        times["bare MALA"].append(timed(run_mala))
    work = args.chains * args.steps
    print(f"load average {os.getloadavg()}, torch threads {torch.get_num_threads()}, device {dev}")
    print(f"{model.info.name}: {args.chains} chains x {args.steps} steps, median of {args.repeats}")
    med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
    for k, (wall, cpu) in med.items():
        print(f"{k:9s} {wall:.3f} s wall, {cpu:.3f} s CPU  ({work / wall:,.0f} chain-steps/s wall)")
    print(f"AIS / MALA throughput: {med['bare MALA'][0] / med['AIS'][0]:.2f}x wall, "
          f"{med['bare MALA'][1] / med['AIS'][1]:.2f}x CPU (goal >= 0.9x)")
    if args.skip_quick:
        return
    ckpts = [DEMO, Path("checkpoints/baseline-digits.pt")]
    s = get_preset("quick").settings("density").to_dict()
    wall, cpu = timed(lambda: density([str(c) for c in ckpts], device=str(dev), progress=False, **s))
    print(f"density, quick preset ({s}), {len(ckpts)} demo checkpoints: {wall:.1f} s wall, {cpu:.1f} s CPU "
          "(goal <= 30 s on 2 cores)")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
