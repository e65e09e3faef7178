"""Time to load a checkpoint: ``torch.load`` alone vs ``jembench.load`` (header + zip CRC check, sha256,
safe unpickling, architecture inference, building the network).

    python benchmarks/bench_load.py                 # WRN-28-10 with a 10000-image replay buffer (JEM's CIFAR file)
    python benchmarks/bench_load.py --arch 10-1 --buffer 0

Writes a JEM-format file with random weights to a temporary folder, then reports the median of ``--repeats``
loads of each kind (the file is in the page cache after the first read).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

import jembench
from jembench.models.wrn import JEMNet

from common import median_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="28-10", help="WRN depth-width (default 28-10, JEM's CIFAR model)")
    ap.add_argument("--norm", default="batch")
    ap.add_argument("--buffer", type=int, default=10000, help="replay buffer images (3x32x32)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    depth, width = (int(v) for v in args.arch.split("-"))
    torch.manual_seed(0)
    sd = JEMNet(depth, width, args.norm, 3, 10).state_dict()
    buf = torch.rand(args.buffer, 3, 32, 32) * 2 - 1 if args.buffer else None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jem.pt")
        torch.save({"model_state_dict": sd, "replay_buffer": buf}, path)
        size = os.path.getsize(path) / 1e6
        raw = median_seconds(lambda: torch.load(path, map_location="cpu", weights_only=True), args.repeats)
        ours = median_seconds(lambda: jembench.load(path), args.repeats)
    print(f"WRN-{depth}-{width} norm={args.norm}, buffer {args.buffer}: file {size:.0f} MB, threads "
          f"{torch.get_num_threads()}")
    print(f"  torch.load(weights_only=True)  {raw:6.2f} s")
    print(f"  jembench.load                  {ours:6.2f} s  ({ours / raw:.1f}x: + CRC check, sha256, build)")


if __name__ == "__main__":
    main()
