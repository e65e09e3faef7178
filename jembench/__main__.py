"""``python -m jembench``: the command line (``torchrun ... -m jembench run-all ...`` shards the run)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="jembench")
