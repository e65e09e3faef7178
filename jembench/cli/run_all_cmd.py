"""``jembench run-all``: every evaluator on every checkpoint, results.json, CSV tables and an HTML report."""

from __future__ import annotations

import sys
import textwrap

import click

from ..errors import JembenchError
from ..evaluators.base import SharedSettings
from ..evaluators.registry import REGISTRY
from ..presets import PRESETS, TOP_LEVEL, evaluator_names
from ..settings import CLI
from ..io import printable
from .options import (checkpoints_argument, emit, given, json_option, out_dir_option, resolve_checkpoints,
                      shared_options, value_text, wait_flag)


def fields_help() -> str:
    """Every --set field with its type, default (and where the presets differ) and help: run-all's epilog."""
    presets = {name: make() for name, make in PRESETS.items()}
    lines = ["Fields of --set FIELD=VALUE (evaluator fields are the options of its command, dashes as underscores;",
             "[default; what a preset sets instead]):"]
    for f in SharedSettings.fields():
        if f.name in TOP_LEVEL:
            lines += _field_lines(f.name, f, [(p, getattr(preset, f.name)) for p, preset in presets.items()])
    for name, spec in REGISTRY.items():
        for f in spec.settings.fields():
            lines += _field_lines(f"{name}.{f.name}", f,
                                  [(p, getattr(preset.settings(name), f.name)) for p, preset in presets.items()])
    return "\b\n" + "\n".join(lines)


def _field_lines(key: str, f, preset_values) -> list[str]:
    differ = [f"{p}: {value_text(v, f.spec.none)}" for p, v in preset_values if v != f.default]
    head = f"  {key} ({f.kind()}) [{'; '.join([value_text(f.default, f.spec.none), *differ])}]"
    return [head, *textwrap.wrap(f.describe(), 96, initial_indent="      ", subsequent_indent="      ")]


@click.command("run-all", epilog=fields_help(), context_settings={"max_content_width": 100})
@checkpoints_argument
@click.option("--preset", type=click.Choice(list(PRESETS)), default="quick", show_default=True,
              help="quick: small N, few eps, short sampling (minutes on a laptop CPU). paper: the JEM protocol "
                   "(sigma 0.03, JEM OOD suite, PGD-40 L-inf and L2 on 300 images, JEM-0/1/10, 10k samples).")
@click.option("--only", default=None, metavar="LIST",
              help=f"Run only these evaluators (comma list of {', '.join(REGISTRY)}).")
@click.option("--skip", default=None, metavar="LIST", help="Leave these evaluators out (comma list).")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
              help="Override any preset field, repeatable, e.g. --set robust.eps_linf=0,8/255 --set gen.n=1000 "
                   "--set ood.temperature=2; the fields are listed below.")
@shared_options("dataset", "n", "sigma")
@click.option("--fid-weights", type=click.Path(dir_okay=False), default=None,
              help="Local Inception weights for generation metrics (= --set gen.fid_weights=PATH).")
@click.option("--offline", is_flag=True,
              help="Never download Inception weights (= --set gen.offline=true); without --fid-weights a step "
                   "that needs them fails at once.")
@click.option("--no-resume", is_flag=True, help="Recompute every step even when OUT_DIR/.parts has it.")
@click.option("--baseline", default=None, metavar="CKPT",
              help="Compare every other checkpoint against this one (its name or file) in the verdict and "
                   "results.json comparisons; default: the one plain classifier (px_weight 0), if any.")
@shared_options("head", "norm", "cache_dir", "device", "seed", "batch_size", "precision", "data_dir", "download")
@json_option
@out_dir_option("run-all")
@wait_flag
@click.option("--quiet", is_flag=True, help="No progress bars or step lines (stderr).")
@click.option("--plan", is_flag=True, help="Print what the run would cost (passes per step, estimated time from a "
                                           "short throughput probe) and stop: nothing is evaluated or written.")
def run_all_cmd(checkpoints, preset, only, skip, assignments, fid_weights, offline, no_resume, baseline, as_json,
                out_dir, wait, quiet, plan, **shared):
    """Accuracy, calibration, OOD detection, robustness and generation of each CKPT, in one run.

    Writes OUT_DIR/results.json (every number with its protocol, provenance and wall times), OUT_DIR/tables/*.csv
    (one per comparison table), per-sample arrays (npz), figures, and OUT_DIR/index.html: one self-contained
    report to open in a browser. Accuracy, calibration and OOD share one forward pass per dataset. An interrupted
    run resumes the finished steps; a failed evaluator is shown in the report and the exit status is 1. Every
    problem that needs no model pass (settings, checkpoints, datasets, extractor weights) is reported at once,
    before the first one; --plan shows what the run will cost.

    \b
    Examples:
      jembench run-all bundled:jem-digits bundled:baseline-digits
      jembench run-all jem.pt --preset paper --data-dir ~/data --out-dir reports/jem-paper
      jembench run-all jem.pt --only clf,calib,ood --sigma 0.03 --set calib.bins=20
    """
    from ..evaluators.run_all import run_all

    overrides: dict[str, object] = {}
    for item in assignments:
        if "=" not in item:
            raise JembenchError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set calib.bins=20")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    if only or skip:
        selected = evaluator_names(only, "only", CLI) if only else tuple(REGISTRY)
        dropped = set(evaluator_names(skip, "skip", CLI)) if skip else set()
        overrides["evaluators"] = tuple(e for e in selected if e not in dropped)
    shared = given(shared)
    overrides.update({k: shared.pop(k) for k in TOP_LEVEL if k in shared})
    overrides.update(given({"gen.fid_weights": fid_weights, "gen.offline": offline or None}))
    result = run_all(resolve_checkpoints(checkpoints), preset=preset, overrides=overrides, out_dir=out_dir,
                     resume=not no_resume, wait=wait, baseline=baseline, progress=not quiet, plan=plan, **shared)
    if plan:
        emit(result.to_dict(), as_json, result.table())
        return
    emit(result.to_dict(), as_json, result.table())
    click.echo(f"results written to {result.out_dir / 'results.json'}; report: {result.html}", err=True)
    if result.failed:
        failures = "; ".join(f"{step}: {result.errors.get(step, 'failed')}" for step in result.failed)
        click.echo(printable(f"jembench: run-all: {len(result.failed)} step(s) failed: {failures} (details in "
                             f"{result.html})"), err=True)
        sys.exit(1)
