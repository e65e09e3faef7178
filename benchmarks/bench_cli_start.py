"""Start-up time of the listing commands: ``jembench --help``, every ``jembench COMMAND --help`` and
``import jembench``, each in a fresh interpreter (the target is <= 0.5 s; they import no torch).

    python benchmarks/bench_cli_start.py             # median and max of 5 runs each
    python benchmarks/bench_cli_start.py --repeats 10

Prints the load average too: on a shared machine, wall times grow with it (CPU time does not).
For where the time goes: ``python -X importtime -c "from jembench.cli import main; main(['run-all', '--help'])"``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time



def timed(code: str, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, {args.repeats} runs each")
    baseline = statistics.median(timed("pass", args.repeats))
    print(f"{'python -c pass':<28} median {baseline:.2f} s")
    from jembench.cli import main as cli

    for command in ["", *cli.list_commands(None)]:
        argv = [command, "--help"] if command else ["--help"]
        code = f"from jembench.cli import main; main({argv!r}, prog_name='jembench')"
        t = timed(code, args.repeats)
        print(f"{'jembench ' + ' '.join(argv):<28} median {statistics.median(t):.2f} s, max {max(t):.2f} s")
    t = timed("import jembench", args.repeats)
    print(f"{'import jembench':<28} median {statistics.median(t):.2f} s, max {max(t):.2f} s")


if __name__ == "__main__":
    main()
