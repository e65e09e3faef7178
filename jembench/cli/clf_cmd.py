"""``jembench clf`` and ``jembench calib``: accuracy and calibration from one shared forward pass."""

from __future__ import annotations

from typing import Any, Callable, Optional

import click

from .. import defaults
from .options import (cache_dir_option, checkpoints_argument, common_options, compose, emit, head_option, json_option,
                      out_dir_option, resolve_checkpoints, save_raw_option, sigma_option)


def _shared(command: str) -> Callable:
    """Options both commands take, in --help order."""
    return compose(
        checkpoints_argument,
        click.option("--dataset", default=None,
                     help="Evaluation dataset (default: the checkpoint's own; JEM/JEM++ files: cifar10, or cifar100 "
                          "for 100-class files). "
                          "See `jembench datasets`."),
        click.option("--split", default=defaults.CLF_SPLIT, show_default=True, help="Dataset split to evaluate."),
        click.option("--n", type=int, default=None, help="Evaluate only the first N samples (quick runs)."),
        common_options, sigma_option, head_option, cache_dir_option, save_raw_option,
        click.option("--refine-steps", type=int, default=defaults.REFINE_STEPS, show_default=True,
                     help="JEM-K: SGLD steps on each test input before classifying (JEM's test_clf --n_steps)."),
        click.option("--refine-step-size", type=float, default=defaults.REFINE_STEP_SIZE, show_default=True,
                     help="SGLD step size of the refinement (JEM: 1)."),
        click.option("--refine-noise", type=float, default=defaults.REFINE_NOISE, show_default=True,
                     help="SGLD noise of the refinement (JEM: 0.01)."),
        out_dir_option(command), json_option,
    )


def _api_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    from ..forward import ForwardCache

    cache_dir: Optional[str] = kw.pop("cache_dir")
    kw.pop("as_json")
    kw["cache"] = ForwardCache(cache_dir)
    return kw


@click.command("clf")
@_shared("clf")
def clf_cmd(checkpoints: tuple[str, ...], **kw: Any) -> None:
    """Accuracy (95% Wilson interval), NLL, Brier score, per-class accuracy and confusion matrix.

    \b
    Examples:
      jembench clf checkpoints/jem-digits.pt --dataset digits
      jembench clf jem.pt jempp.pt --dataset cifar10 --sigma 0.03     (the JEM scripts' test noise)
      jembench clf jem.pt --refine-steps 10 --n 1000                    (JEM-10)
      jembench clf --cache-dir ~/.cache/jembench/forward                (CKPT from $JEMBENCH_CKPT)

    Writes OUT_DIR/results.json (metrics and the full protocol) and, with --save-raw,
    OUT_DIR/raw/*.npz (probabilities, logits, log p(x), labels). Several CKPTs: one comparison table.
    """
    from ..evaluators.clf import clf
    from ..evaluators.common import echo_written

    as_json = kw["as_json"]
    result = clf(resolve_checkpoints(checkpoints), **_api_kwargs(kw))
    emit(result.to_dict(), as_json, result.table())
    echo_written(kw["out_dir"])


@click.command("calib")
@_shared("calib")
@click.option("--bins", type=int, default=defaults.CALIB_BINS, show_default=True,
              help="Equal-width confidence bins (lo, hi]; JEM++ reports 20.")
@click.option("--bootstrap", type=int, default=defaults.CALIB_BOOTSTRAP, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0 = none).")
def calib_cmd(checkpoints: tuple[str, ...], **kw: Any) -> None:
    """ECE, adaptive ECE, MCE, RMS and classwise calibration error, reliability diagram.

    \b
    Examples:
      jembench calib checkpoints/jem-digits.pt --dataset digits
      jembench calib jem.pt --dataset cifar10 --sigma 0.03 --bins 20   (the JEM++ protocol)

    Intervals: seeded percentile bootstrap. Temperature scaling is fitted on a seeded half of the
    evaluation set and reported (ECE/NLL before and after, on the other half) as a reference only:
    the headline numbers are never temperature-scaled. Writes OUT_DIR/results.json and
    OUT_DIR/figures/reliability-*.png (and OUT_DIR/raw/*.npz with --save-raw).
    """
    from ..evaluators.calib import calib
    from ..evaluators.common import echo_written

    as_json = kw["as_json"]
    result = calib(resolve_checkpoints(checkpoints), **_api_kwargs(kw))
    emit(result.to_dict(), as_json, result.table())
    echo_written(kw["out_dir"])
