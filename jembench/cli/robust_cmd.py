"""``jembench robust``: adversarial robustness, undefended and with JEM-K SGLD purification."""

from __future__ import annotations

from typing import Optional

import click

from .. import defaults
from ..errors import JembenchError
from .options import checkpoints_argument, common_options, emit, head_option, json_option, out_dir_option, \
    parse_list, resolve_checkpoints, save_raw_option


def _one_float(text: Optional[str], name: str) -> Optional[float]:
    if text is None:
        return None
    values = parse_list(text, float, name)
    if len(values) != 1:
        raise JembenchError(f"{name} takes one number (fractions like 2/255 allowed), got {text!r}")
    return values[0]


@click.command("robust", short_help="Robust accuracy under PGD / APGD, with and without SGLD purification.")
@checkpoints_argument
@click.option("--norm", default=defaults.ROBUST_NORM, show_default=True, metavar="linf|l2",
              help="Threat model (checked by the evaluator: a bad value is a one-line error).")
@click.option("--eps", default=None,
              help="Budgets in [0, 1] pixel units, comma-separated, fractions allowed. Default: "
                   f"linf {defaults.ROBUST_EPS['linf']}; l2 {defaults.ROBUST_EPS['l2']}.")
@click.option("--n", type=int, default=defaults.ROBUST_N, show_default=True, help="Test images (the first N).")
@click.option("--purify-steps", default=",".join(map(str, defaults.ROBUST_PURIFY_STEPS)), show_default=True,
              help="JEM-K settings: SGLD purification steps K, e.g. 0,1,10. K=0 (undefended) is always reported.")
@click.option("--attacks", default=",".join(defaults.ROBUST_ATTACKS), show_default=True,
              help="Comma-separated: pgd (PGD / PGD-L2), apgd-ce, apgd-dlr (torchattacks).")
@click.option("--steps", type=int, default=defaults.ROBUST_STEPS, show_default=True, help="Attack iterations.")
@click.option("--step-size", default=None,
              help="Attack step in pixel units (e.g. 2/255). Default: linf max(2/255, 2.5*eps/steps); "
                   "l2 2.5*eps/steps.")
@click.option("--restarts", type=int, default=defaults.ROBUST_RESTARTS, show_default=True,
              help="Random restarts; a point is broken if any restart breaks it.")
@click.option("--eot", type=int, default=defaults.ROBUST_EOT, show_default=True,
              help="Purifications averaged per attack gradient on defended models (EOT; Hill et al. use 15).")
@click.option("--eval-purifications", type=int, default=defaults.ROBUST_EVAL_PURIFICATIONS, show_default=True,
              help="Fresh purifications whose averaged logits decide a break (Hill et al. use 150).")
@click.option("--full-grad-max-k", type=int, default=defaults.ROBUST_FULL_GRAD_MAX_K, show_default=True,
              help="Also attack with full gradients through the SGLD chain when K <= this (memory grows with K).")
@click.option("--purify-step-size", type=float, default=defaults.ROBUST_PURIFY_STEP_SIZE, show_default=True,
              help="SGLD step of the purifier (model space).")
@click.option("--purify-noise", type=float, default=defaults.ROBUST_PURIFY_NOISE, show_default=True,
              help="SGLD noise of the purifier (model space).")
@click.option("--purify-copies", type=int, default=defaults.ROBUST_PURIFY_COPIES, show_default=True,
              help="Noisy copies purified per input; their logits are averaged.")
@click.option("--purify-sigma", type=float, default=defaults.ROBUST_PURIFY_SIGMA, show_default=True,
              help="Start noise of each copy (model space).")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Large-eps probe: accuracy must fall to about 0, else a warning (gradient masking).")
@click.option("--dataset", default=None, help="Evaluation dataset (default: the checkpoint's own).")
@click.option("--split", default="test", show_default=True)
@head_option
@common_options
@save_raw_option
@json_option
@out_dir_option("robust")
def robust_cmd(checkpoints, norm, eps, n, purify_steps, attacks, steps, step_size, restarts, eot, eval_purifications,
               full_grad_max_k, purify_step_size, purify_noise, purify_copies, purify_sigma, probe, dataset, split,
               head, device, seed, batch_size, data_dir, download, save_raw, as_json, out_dir):
    """Robust accuracy of CKPT... under L-inf or L2 attacks, undefended (K=0) and with JEM-K purification.

    Attacks (torchattacks, seeded) run on images in [0, 1]; a wrapper maps them to the model's input space.
    On purified models every attack is adaptive: BPDA with EOT, transfer of the undefended model's adversarial
    examples, and full gradients through the chain for small K. A point counts as broken only if the logits
    averaged over --eval-purifications fresh purifications predict a wrong class. Robust accuracy is the
    per-image worst case over attacks, with 95% Wilson intervals.

    \b
    Examples:
      jembench robust checkpoints/jem-digits.pt --eps 0,2/255,8/255 --n 100
      jembench robust ckpt.pt --purify-steps 0,1,10 --eot 15 --eval-purifications 150
      jembench robust ckpt.pt --norm l2 --eps 0,0.5,1 --attacks pgd,apgd-ce,apgd-dlr
    """
    from ..evaluators.common import echo_written
    from ..evaluators.robust import robust

    result = robust(resolve_checkpoints(checkpoints), norm=norm, eps=eps, n=n,
                    purify_steps=parse_list(purify_steps, int, "--purify-steps"),
                    attacks=tuple(parse_list(attacks, str, "--attacks")), steps=steps,
                    step_size=_one_float(step_size, "--step-size"), restarts=restarts, eot=eot,
                    eval_purifications=eval_purifications, full_grad_max_k=full_grad_max_k,
                    purify_step_size=purify_step_size, purify_noise=purify_noise, purify_copies=purify_copies,
                    purify_sigma=purify_sigma, probe=probe, dataset=dataset, split=split, head=head, device=device,
                    seed=seed, batch_size=batch_size, data_dir=data_dir, download=download, save_raw=save_raw,
                    out_dir=out_dir)
    emit(result.to_dict(), as_json, result.table())
    echo_written(out_dir)
