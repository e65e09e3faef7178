"""CI check of torchrun sharding: a 2-process gloo ``run-all`` of the demo gives every metric and interval of the
single-process run (clf, calib, ood, robust, gen with its chain diagnostics and ladder, density).

The single-process numbers are tests/data/demo-quick-metrics.json, which tests/test_settings.py checks against a
single-process run of the same command in the suite (same tolerance: rel 1e-6, the rounding of float32 feature
matrices under other thread counts). Also checked: results.json records world size 2 and gloo, and the summary
table is printed once (rank 0 alone prints).

    python tests/dist_check.py            (CI: .ci/run; about 40 s on 2 CPU cores)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "data" / "demo-quick-metrics.json"
REL, ABS = 1e-6, 1e-9


def close(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=REL, abs_tol=ABS)


def differences(doc: dict, expected: list[dict]) -> list[str]:
    """Every metric or interval of ``doc`` that differs from ``expected`` (and every missing one)."""
    recorded = {e["evaluator"] for e in expected}
    got = [e for e in doc["evaluations"] if e["evaluator"] in recorded]  # evaluators added since: no recorded values
    keys = [(e["evaluator"], e["checkpoint"]["name"]) for e in got]
    if keys != [(e["evaluator"], e["checkpoint"]) for e in expected]:
        return [f"evaluations differ: {keys}"]
    out = []
    for g, e in zip(got, expected):
        where = f"{g['evaluator']} ({g['checkpoint']['name']})"
        if set(g["metrics"]) != set(e["metrics"]) or set(g["intervals"]) != set(e["intervals"]):
            out.append(f"{where}: metric names differ")
            continue
        out += [f"{where} {k}: {g['metrics'][k]} != {v}" for k, v in e["metrics"].items()
                if not close(g["metrics"][k], v)]
        out += [f"{where} {k}: {g['intervals'][k]} != {v}" for k, v in e["intervals"].items()
                if not all(close(x, y) for x, y in zip(g["intervals"][k], v))]
    return out


def main() -> int:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "two"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "jembench",
               "run-all", str(ROOT / "checkpoints" / "jem-digits.pt"), str(ROOT / "checkpoints" / "baseline-digits.pt"),
               "--preset", "quick", "--device", "cpu", "--out-dir", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        run = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            print(f"dist_check: torchrun exited {run.returncode}\n{run.stderr[-4000:]}", file=sys.stderr)
            return 1
        doc = json.loads((out / "results.json").read_text())
    problems = differences(doc, json.loads(EXPECTED.read_text()))  # evaluators without recorded values: not compared
    dist = doc["provenance"].get("distributed") or {}
    if (dist.get("world_size"), dist.get("backend")) != (2, "gloo"):
        problems.append(f"provenance.distributed is {dist}, expected world size 2 and gloo")
    if run.stdout.count("checkpoint ") != 1:
        problems.append(f"the summary table was printed {run.stdout.count('checkpoint ')} times, expected once")
    expected = json.loads(EXPECTED.read_text())
    n = sum(len(e["metrics"]) + len(e["intervals"]) for e in expected)
    if problems:
        print("dist_check: 2-process run-all differs from the single-process run:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 1
    print(f"dist_check: 2-process gloo run-all equals the single-process run ({n} metrics and intervals, "
          f"{time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
