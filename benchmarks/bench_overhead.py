"""jembench's overhead: the wall time of a run against the bare model passes it needs, timed alternately.

    python benchmarks/bench_overhead.py [--repeats 5] [--n 20000] [--only quick|forward] [--device cpu]

Two workloads (targets of issue 15 on a 2-core CPU):

- ``quick``: ``run-all --preset quick`` on the two bundled digits checkpoints (the README's demo), all evaluators,
  a fresh output folder and no resume. Target <= 1.5x.
- ``forward``: ``run-all --only clf,calib,ood`` on N synthetic 1x8x8 images (seeded uint8 noise with labels, an
  npz set) against the 4 synthetic OOD sets, every OOD score (incl. gradnorm), the quick preset's bootstraps.
  Target <= 1.15x.

"The bare passes" are measured, not guessed: a first (untimed) run records every call into the evaluated models
(``HybridModel.logits_and_log_px`` / ``logits``: batch shape, and whether a gradient reached its input); the bare
replay makes the same calls on random inputs of those shapes (each input gradient taken with one
``torch.autograd.grad``) with nothing else around them. Then jembench and the replay alternate ``--repeats`` times
and the median of the per-repeat ratios is printed. Passes of generation's feature extractor (not a
HybridModel) and the second-order gradients of full-gradient attacks count as overhead here (conservative).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import jembench
from jembench.models.hybrid import HybridModel
from jembench.scores import SCORES

CHECKPOINTS = [Path("checkpoints/jem-digits.pt"), Path("checkpoints/baseline-digits.pt")]
TARGETS = {"quick": 1.5, "forward": 1.15}


@contextmanager
def recording(calls: list):
    """Record ``(model name, method, input shape, gradient taken)`` of every HybridModel call inside."""
    originals = {m: getattr(HybridModel, m) for m in ("logits_and_log_px", "logits")}

    def wrap(method, fn):
        def recorded(self, x):
            entry = [self.info.name, method, tuple(x.shape), False]
            calls.append(entry)
            if x.requires_grad:
                x.register_hook(lambda g: entry.__setitem__(3, True))
            return fn(self, x)
        return recorded

    for m, fn in originals.items():
        setattr(HybridModel, m, wrap(m, fn))
    try:
        yield
    finally:
        for m, fn in originals.items():
            setattr(HybridModel, m, fn)


def bare_replay(calls: list, models: dict[str, HybridModel], device: str):
    """A function making the recorded calls on random inputs (created once, outside the timing)."""
    inputs = {shape: torch.randn(shape, device=device) for _, _, shape, _ in calls}

    def replay() -> None:
        for name, method, shape, grad in calls:
            model = models[name]
            x = inputs[shape].requires_grad_(grad)
            with torch.set_grad_enabled(grad):
                out = getattr(model, method)(x)
                out = out[1] if method == "logits_and_log_px" else out
                if grad:
                    torch.autograd.grad(out.sum(), x)
            x.requires_grad_(False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return replay


def synthetic_set(root: Path, n: int) -> str:
    """An npz set of ``n`` seeded uint8 1x8x8 images with labels 0..9: ``npz:PATH``."""
    g = np.random.default_rng(0)
    path = root / "synthetic.npz"
    np.savez(path, x=g.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), y=g.integers(0, 10, n))
    return f"npz:{path}"


def workload(kind: str, root: Path, n: int, device: str):
    """``(run(out_dir), checkpoints)`` of a workload."""
    if kind == "quick":
        return (lambda out: jembench.run_all(CHECKPOINTS, preset="quick", out_dir=out, device=device, resume=False,
                                             progress=False)), CHECKPOINTS
    data = synthetic_set(root, n)
    overrides = {"evaluators": "clf,calib,ood", "dataset": data, "ood.out": "synthetic",
                 "ood.scores": ",".join(SCORES)}
    return (lambda out: jembench.run_all(CHECKPOINTS[:1], preset="quick", overrides=overrides, out_dir=out,
                                         device=device, resume=False, progress=False)), CHECKPOINTS[:1]


def measure(kind: str, repeats: int, n: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run, ckpts = workload(kind, root, n, device)
        calls: list = []
        with recording(calls):
            run(root / "record")
        models = {m.info.name: m for m in (jembench.load(c).to(device).eval() for c in ckpts)}
        replay = bare_replay(calls, models, device)
        replay()  # warm-up
        ratios, walls, bares = [], [], []
        for i in range(repeats):
            out = root / f"run{i}"
            start = time.perf_counter()
            run(out)
            walls.append(time.perf_counter() - start)
            start = time.perf_counter()
            replay()
            bares.append(time.perf_counter() - start)
            ratios.append(walls[-1] / bares[-1])
            shutil.rmtree(out, ignore_errors=True)
    return {"kind": kind, "calls": len(calls), "grad_calls": sum(c[3] for c in calls),
            "jembench_s": statistics.median(walls), "bare_s": statistics.median(bares),
            "ratio": statistics.median(ratios), "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=20000, help="images of the forward workload")
    ap.add_argument("--only", choices=list(TARGETS), default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, load average before: {load}")
    for kind in [args.only] if args.only else list(TARGETS):
        r = measure(kind, args.repeats, args.n, args.device)
        label = "quick run-all (2 checkpoints)" if kind == "quick" else f"clf + calib + ood, n={args.n}, 4 OOD sets"
        print(f"{label}: jembench {r['jembench_s']:.2f} s, bare passes {r['bare_s']:.2f} s "
              f"({r['calls']} model calls, {r['grad_calls']} with an input gradient): ratio {r['ratio']:.2f}x "
              f"(target <= {TARGETS[kind]}x; per repeat {', '.join(f'{x:.2f}' for x in r['ratios'])})")
    with open("/proc/loadavg") as f:
        print(f"load average after: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
