"""``jembench ood``: OOD detection with log p(x), max-softmax, max-logit, energy and gradient-norm scores."""

from __future__ import annotations

import click

from .. import defaults
from ..scores import SCORES
from .options import (cache_dir_option, checkpoints_argument, common_options, emit, head_option, json_option,
                      out_dir_option, resolve_checkpoints, save_raw_option, sigma_option)

_PRESETS = "; ".join(f"{k} = {', '.join(v)}" for k, v in defaults.OOD_PRESETS.items())


@click.command("ood")
@checkpoints_argument
@click.option("--in", "in_dataset", default=None, metavar="NAME",
              help="In-distribution dataset (its test split); default: the checkpoint's dataset.")
@click.option("--out", "out_sets", multiple=True, metavar="NAME",
              help=f"OOD set or preset, repeatable or comma list: a registry name (jembench datasets), npz:PATH, "
                   "folder:PATH, a synthetic set (noise, uniform, constant, interp, rotated) or a preset "
                   f"({_PRESETS}). "
                   "Default: 'digits' for digits, 'jem' for cifar10, else 'synthetic'.")
@click.option("--score", "scores", multiple=True, metavar="NAME",
              help=f"Score(s), repeatable or comma list: {', '.join(SCORES)}; default all. Higher = more in-dist.")
@click.option("--temperature", type=float, default=defaults.OOD_TEMPERATURE, show_default=True,
              help="T of the energy-T score T*logsumexp(logits/T).")
@click.option("--bootstrap", type=int, default=defaults.OOD_BOOTSTRAP, show_default=True,
              help="Bootstrap resamples of the AUROC 95% interval (0 = none).")
@click.option("--n", type=int, default=None, help="Use only the first N images of each set (quick runs).")
@click.option("--no-figures", is_flag=True, help="Skip the histogram and ROC figures.")
@sigma_option
@head_option
@cache_dir_option
@save_raw_option
@json_option
@out_dir_option("ood")
@common_options
def ood_cmd(checkpoints, in_dataset, out_sets, scores, temperature, bootstrap, n, no_figures, sigma, head, cache_dir,
            save_raw, as_json, out_dir, device, seed, batch_size, data_dir, download):
    """OOD detection: AUROC, AUPR-In/Out, FPR@95 (both conventions), detection error per score and OOD set.

    In-distribution is the positive class; every score is oriented so that higher = more in-distribution.
    CKPT defaults to $JEMBENCH_CKPT.

    \b
    Examples:
      jembench ood checkpoints/jem-digits.pt                     digits vs noise, uniform, constant, interp, rotated
      jembench ood --in cifar10 --out svhn                       CKPT from $JEMBENCH_CKPT
      jembench ood jem.pt --out jem --sigma 0.03 --data-dir D    the JEM paper's Table 2 protocol
      jembench ood jem.pt --out svhn --out cifar100 --score logp,gradnorm --save-raw
    """
    from ..evaluators.common import echo_written
    from ..evaluators.ood import ood

    result = ood(resolve_checkpoints(checkpoints), in_dataset, list(out_sets), scores=list(scores), sigma=sigma,
                 seed=seed, temperature=temperature, bootstrap=bootstrap, n=n, batch_size=batch_size, device=device,
                 data_dir=data_dir, download=download, head=head, cache_dir=cache_dir, out_dir=out_dir,
                 save_raw=save_raw, figures=not no_figures)
    emit(result.to_dict(), as_json, _summary(result))
    echo_written(out_dir)


def _summary(result) -> str:
    cols = ["score", "out", "auroc", "auroc_lo", "auroc_hi", "aupr_in", "aupr_out", "fpr95_in_kept",
            "fpr95_ood_caught", "detection_error", "n_in", "n_out"]
    import pandas as pd

    parts = []
    for ev in result.evaluations:
        table = pd.DataFrame(ev.rows, columns=cols).to_string(index=False, float_format=lambda v: f"{v:.4f}")
        p = ev.protocol
        parts.append(f"{ev.checkpoint.get('name')}: in = {p['in_dataset']} (n={p['n_in']}), sigma = {p['test_sigma']}"
                     f", in-distribution positive, higher score = more in-distribution\n{table}")
        parts += [f"warning: {w}" for w in ev.warnings]
    return "\n\n".join(parts)
