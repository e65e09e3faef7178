"""``jembench inspect``: what jembench read and inferred from a checkpoint, before any evaluation."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import bundled, defaults
from .options import json_option, resolve_checkpoints, shared_options

HEAD_TEXT = {"ccf": "ccf: log p(x) = logsumexp of the logits", "f": "f: log p(x) = energy head (--uncond)"}


def format_summary(d: dict[str, Any]) -> str:
    """The human-readable block for one checkpoint (the fields of :func:`jembench.models.describe`)."""
    arch = d["arch_label"] + (f", norm {d['norm']}" if d["norm"] else "")
    if d.get("bn_momentum") is not None:
        arch += f" (BatchNorm momentum {d['bn_momentum']})"
    lo, hi = d["value_range"]
    mean = ",".join(f"{v:g}" for v in d["mean"])
    std = ",".join(f"{v:g}" for v in d["std"])
    buf = d["replay_buffer_shape"]
    rows = [
        ("checkpoint", d["path"] or d["name"]),
        ("family", f"{d['family']} (file format: {d['source_format']})"),
        ("architecture", arch),
        ("classes", str(d["n_classes"])),
        ("input", f"{'x'.join(str(v) for v in d['input_shape'])}, values [{lo:g}, {hi:g}] "
                  f"(= (pixel01 - {mean}) / {std})"),
        ("head", HEAD_TEXT.get(d["head"], d["head"])),
        ("dataset", d["dataset"] or f"not recorded (evaluators assume {defaults.DEFAULT_DATASET_JEM_FILES})"),
        ("train sigma", "not recorded" if d["train_sigma"] is None else f"{d['train_sigma']:g}"),
        ("replay buffer", "none" if buf is None else "x".join(str(v) for v in buf)),
        ("parameters", f"{d['n_parameters']:,}"),
        ("sha256", d["sha256"] or "-"),
    ]
    if d["jembench_version"]:
        rows.append(("written by", f"jembench {d['jembench_version']}"))
    if d["train_config"]:
        rows += [("train config" if i == 0 else "", line) for i, line in enumerate(_wrapped_config(d["train_config"]))]
    if d["extras"]:
        rows.append(("extras", ", ".join(d["extras"])))
    rows += [("experts" if i == 0 else "", f"{e['weight']:g} x {e['path'] or e['name']} ({(e['sha256'] or '-')[:12]})")
             for i, e in enumerate(d.get("experts") or [])]
    lines = [f"{k:<14}{v}" for k, v in rows]
    lines += [f"{'notes' if i == 0 else '':<14}- {n}" for i, n in enumerate(d["notes"])] or [f"{'notes':<14}none"]
    return "\n".join(lines)


def _short(value: Any) -> str:
    """A config value in one short token: long lists and dicts (e.g. the training history) are summarised."""
    text = str(value)
    if len(text) <= 60:
        return text
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} entries]"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    return text[:57] + "..."


def _wrapped_config(config: dict[str, Any], width: int = 86) -> list[str]:
    lines, line = [], ""
    for k in sorted(config):
        item = f"{k}={_short(config[k])}"
        if line and len(line) + 1 + len(item) > width:
            lines.append(line)
            line = item
        else:
            line = f"{line} {item}" if line else item
    return lines + [line]


@click.command("inspect")
@click.argument("checkpoints", nargs=-1, type=click.Path(), metavar="[CKPT]...")
@shared_options("head", "norm")
@click.option("--dataset", default=None, metavar="NAME",
              help="The dataset the checkpoint was trained on (JEM files do not say): sets the input image size "
                   "from the dataset's shape and checks the class count. See `jembench datasets`.")
@json_option
def inspect_cmd(checkpoints: tuple[str, ...], head: str | None, norm: str | None, dataset: str | None,
                as_json: bool) -> None:
    """Show what jembench reads and infers from checkpoint CKPT (reads the file only, evaluates nothing).

    \b
    Prints the family (jem, jem++, jembench), the file format, the architecture inferred from the keys
    (WRN-depth-width and normalisation), class count, input shape and value range, the log p(x) head,
    dataset, training noise sigma, replay buffer, parameter count, sha256, and notes on every guess made.
    CKPT defaults to $JEMBENCH_CKPT; bundled:NAME names a checkpoint shipped with jembench, and
    `jembench inspect bundled:` lists them. Files are read with weights_only=True: a pickle that would
    run code is refused.

    \b
    JEM / JEM++ files do not record everything; say what you know:
      --head f          JEM's unconditional (--uncond) model: log p(x) from the energy head
      --norm layer      GroupNorm files (they have InstanceNorm's keys)
      --dataset NAME    e.g. cifar100: image size from the dataset; class count checked

    \b
    Examples:
      jembench inspect bundled:jem-digits
      jembench inspect bundled:
      jembench inspect CIFAR10_MODEL.pt --dataset cifar10 --json
    """
    if bundled.PREFIX in checkpoints:
        shipped = bundled.listing()
        click.echo(json.dumps(shipped, indent=2) if as_json else "\n".join(
            f"{d['name']:<38}{d['bytes'] / 1e6:5.1f} MB  {d['description']}" for d in shipped))
        return
    from ..models import inspect_checkpoint

    docs = [inspect_checkpoint(p, head=head, norm=norm, dataset=dataset) for p in resolve_checkpoints(checkpoints)]
    if as_json:
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        click.echo("\n\n".join(format_summary(d) for d in docs))
