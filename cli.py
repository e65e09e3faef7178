#!/usr/bin/env python3
"""Run the jembench CLI from a checkout: ``python cli.py --help`` (same as the installed ``jembench``)."""

from jembench.cli import main

if __name__ == "__main__":
    main(prog_name="jembench")  # usage lines and error hints name the command users type
