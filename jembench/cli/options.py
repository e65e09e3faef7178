"""Options shared by every command, so each means the same everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import click

from .. import defaults
from ..errors import JembenchError
from ..models.wrn import NORMS


def compose(*decorators: Callable) -> Callable:
    """Several click decorators as one, applied in the order listed (= --help order)."""
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


checkpoints_argument = click.argument("checkpoints", nargs=-1, type=click.Path())  # jembench.load explains bad paths
device_option = click.option("--device", default=defaults.DEVICE, show_default=True,
                             help="cpu, cuda, cuda:1, mps, or auto (CUDA when available).")
seed_option = click.option("--seed", type=int, default=defaults.SEED, show_default=True,
                           help="Seed of every random draw (noise, splits, samplers, attacks); recorded.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                               help=f"Dataset root (default ${defaults.DATA_ENV}, else ~/.cache/jembench/data).")
download_option = click.option("--download", is_flag=True, help="Allow downloading absent datasets (torchvision).")
batch_size_option = click.option("--batch-size", type=int, default=defaults.BATCH_SIZE, show_default=True)
sigma_option = click.option("--sigma", type=float, default=defaults.TEST_SIGMA, show_default=True,
                            help="Test-time Gaussian input noise in model space (JEM's scripts use 0.03).")
save_raw_option = click.option("--save-raw", is_flag=True, help="Also write per-sample arrays (npz) for re-analysis.")
cache_dir_option = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                                help="Persist forward passes here (keyed by content hashes) and reuse them.")
head_option = click.option("--head", type=click.Choice(["ccf", "f"]), default=None,
                           help="JEM files do not say: ccf = log p(x) from logits (default), f = energy head.")
norm_option = click.option("--norm", type=click.Choice(NORMS), default=None,
                           help="Override the inferred normalisation; GroupNorm files share InstanceNorm's keys: "
                                "pass --norm layer for them.")


def out_dir_option(command: str) -> Callable:
    return click.option("--out-dir", type=click.Path(file_okay=False),
                        default=str(Path(defaults.REPORTS_DIR) / command), show_default=True,
                        help="Where results.json, figures and raw arrays go.")


common_options = compose(device_option, seed_option, batch_size_option, data_dir_option, download_option)


def resolve_checkpoints(paths: tuple[str, ...]) -> list[str]:
    """CKPT arguments, else ``$JEMBENCH_CKPT`` (several joined by ``os.pathsep``)."""
    if paths:
        return list(paths)
    env = os.environ.get(defaults.CKPT_ENV, "").strip()
    if env:
        return [p for p in env.split(os.pathsep) if p]
    raise JembenchError(f"no checkpoint given: pass CKPT (e.g. checkpoints/jem-digits.pt) or set ${defaults.CKPT_ENV}")


def parse_list(text: str, kind: Callable[[str], Any] = float, name: str = "value") -> list[Any]:
    """``"0,2/255,8/255"`` -> ``[0.0, 0.00784..., 0.0313...]``; ints for ``kind=int``."""
    out = []
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        try:
            if "/" in item and kind is float:
                num, den = item.split("/")
                out.append(float(num) / float(den))
            else:
                out.append(kind(item))
        except (ValueError, ZeroDivisionError):
            raise JembenchError(f"cannot read {name} {item!r} in {text!r} (expected a comma-separated list, "
                                "fractions like 8/255 allowed)") from None
    return out


def emit(doc: dict[str, Any], as_json: bool, summary: str) -> None:
    """Print the JSON document (``--json``) or a human summary."""
    click.echo(json.dumps(doc, indent=2) if as_json else summary)
