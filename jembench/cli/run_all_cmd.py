"""``jembench run-all``: every evaluator on every checkpoint, results.json, CSV tables and an HTML report."""

from __future__ import annotations

import sys

import click

from ..presets import EVALUATORS, PRESETS, field_names
from .options import (cache_dir_option, checkpoints_argument, common_options, emit, head_option, json_option,
                      out_dir_option, resolve_checkpoints)


@click.command("run-all")
@checkpoints_argument
@click.option("--preset", type=click.Choice(list(PRESETS)), default="quick", show_default=True,
              help="quick: small N, few eps, short sampling (minutes on a laptop CPU). paper: the JEM protocol "
                   "(sigma 0.03, JEM OOD suite, PGD-40 L-inf and L2 on 300 images, JEM-0/1/10, 10k samples).")
@click.option("--only", default=None, metavar="LIST",
              help=f"Run only these evaluators (comma list of {', '.join(EVALUATORS)}).")
@click.option("--skip", default=None, metavar="LIST", help="Leave these evaluators out (comma list).")
@click.option("--dataset", default=None, help="Evaluation dataset (default: each checkpoint's own).")
@click.option("--n", type=int, default=None, help="Images for accuracy, calibration and OOD (overrides the preset).")
@click.option("--sigma", type=float, default=None,
              help="Test-time input noise sigma, model space (overrides the preset).")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
              help="Override any preset field, repeatable, e.g. --set robust.eps_linf=0,8/255 --set gen.n=1000. "
                   "Fields: " + ", ".join(field_names()) + ".")
@click.option("--fid-weights", type=click.Path(dir_okay=False), default=None,
              help="Local Inception weights for generation metrics (= --set gen.fid_weights=PATH).")
@click.option("--offline", is_flag=True,
              help="Never download Inception weights; without --fid-weights a step that needs them fails at once.")
@click.option("--no-resume", is_flag=True, help="Recompute every step even when OUT_DIR/.parts has it.")
@head_option
@cache_dir_option
@json_option
@out_dir_option("run-all")
@common_options
def run_all_cmd(checkpoints, preset, only, skip, dataset, n, sigma, assignments, fid_weights, offline, no_resume, head,
                cache_dir, as_json, out_dir, device, seed, batch_size, data_dir, download):
    """Accuracy, calibration, OOD detection, robustness and generation of each CKPT, in one run.

    Writes OUT_DIR/results.json (every number with its protocol, provenance and wall times), OUT_DIR/tables/*.csv
    (one per comparison table), per-sample arrays (npz), figures, and OUT_DIR/index.html: one self-contained
    report to open in a browser. Accuracy, calibration and OOD share one forward pass per dataset. An interrupted
    run resumes the finished steps; a failed evaluator is shown in the report and the exit status is 1.

    \b
    Examples:
      jembench run-all checkpoints/jem-digits.pt checkpoints/baseline-digits.pt
      jembench run-all jem.pt --preset paper --data-dir ~/data --out-dir reports/jem-paper
      jembench run-all jem.pt --only clf,calib,ood --sigma 0.03 --set calib.bins=20
    """
    from ..evaluators.run_all import run_all
    from .options import parse_list

    overrides: dict[str, object] = {}
    for item in assignments:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected FIELD=VALUE", param_hint="--set")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    selected = parse_list(only, str, "evaluator") if only else list(EVALUATORS)
    if skip:
        dropped = set(parse_list(skip, str, "evaluator"))
        selected = [e for e in selected if e not in dropped]
    if only or skip:
        overrides["evaluators"] = tuple(selected)
    for key, value in (("dataset", dataset), ("n", n), ("sigma", sigma), ("gen.fid_weights", fid_weights),
                       ("gen.offline", offline or None)):
        if value is not None:
            overrides[key] = value
    result = run_all(resolve_checkpoints(checkpoints), preset=preset, overrides=overrides, out_dir=out_dir,
                     device=device, seed=seed, batch_size=batch_size, data_dir=data_dir, download=download, head=head,
                     cache_dir=cache_dir, resume=not no_resume)
    emit(result.to_dict(), as_json, result.table())
    click.echo(f"results written to {result.out_dir / 'results.json'}; report: {result.html}", err=True)
    if result.failed:
        failures = "; ".join(f"{step}: {result.errors.get(step, 'failed')}" for step in result.failed)
        click.echo(f"jembench: run-all: {len(result.failed)} step(s) failed: {failures} (details in {result.html})",
                   err=True)
        sys.exit(1)
