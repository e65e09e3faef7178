"""``jembench train``: train a JEM / JEM++ hybrid (or the plain-classifier baseline) on a registered dataset."""

from __future__ import annotations

import json

import click

from .. import defaults
from ..errors import JembenchError
from .options import json_option, parse_list, shared_options

D = defaults.TRAIN


def _opt(name: str, help: str, **kw):
    """An option whose default is None: the value in defaults.TRAIN, or the resumed checkpoint's."""
    return click.option(name, default=None, help=f"{help} [default: {D[name.lstrip('-').replace('-', '_')]}]", **kw)


@click.command("train")
@click.option("--dataset", default=None,
              help="Registered dataset name (jembench datasets), or npz:PATH holding x_train, y_train, x_test, "
                   f"y_test. [default: {D['dataset']}]")
@click.option("--out", type=click.Path(), default=None,
              help="Checkpoint to write (native format, rewritten after every epoch). "
                   "[default: runs/OBJECTIVE-DATASET.pt, or the --resume file]")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue a jembench train checkpoint: weights, optimizer, buffer, generator states; its stored "
                   "config is the default for every option (--epochs is the total).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (otherwise refused).")
@_opt("--depth", "WRN depth 6n+4.", type=int)
@_opt("--width", "WRN widening factor k.", type=int)
@_opt("--norm", "none (JEM), batch (JEM++), instance, layer, act.", type=click.Choice(["none", "batch", "instance",
                                                                                       "layer", "act"]))
@_opt("--epochs", "Total epochs.", type=int)
@_opt("--batch-size", "Images per step.", type=int)
@_opt("--optimizer", "adam or sgd (momentum 0.9).", type=click.Choice(["adam", "sgd"]))
@_opt("--lr", "Learning rate.", type=float)
@_opt("--weight-decay", "Weight decay.", type=float)
@_opt("--warmup-steps", "Linear learning-rate warm-up steps (JEM: 1000 on CIFAR).", type=int)
@_opt("--decay-epochs", "Comma-separated epochs after which the lr is multiplied by --decay-rate (JEM: 160,180).")
@_opt("--decay-rate", "Learning-rate decay factor.", type=float)
@_opt("--px-weight", "Weight of the p(x) term E(x_data) - E(x_sampled); 0 = plain classifier baseline.", type=float)
@_opt("--sampler", "sgld (JEM) or jem++ (one clipped gradient per outer step).", type=click.Choice(["sgld", "jem++"]))
@_opt("--sgld-steps", "SGLD steps per training step (JEM: 20).", type=int)
@_opt("--sgld-step-size", "SGLD step size alpha on grad log p(x) (JEM: 1).", type=float)
@_opt("--sgld-noise", "SGLD noise sigma (JEM: 0.01).", type=float)
@_opt("--grad-clamp", "Proximal clamp of the sampler gradient to [-c, c] (JEM++: 1).", type=float)
@click.option("--clamp-x/--no-clamp-x", default=None, 
              help="Clamp SGLD chains to the data range. [default: off, as JEM]")
@_opt("--jempp-outer", "JEM++ sampler outer steps M.", type=int)
@_opt("--jempp-inner", "JEM++ sampler inner steps per gradient.", type=int)
@_opt("--jempp-step-size", "JEM++ sampler inner step size.", type=float)
@_opt("--jempp-noise", "JEM++ sampler noise per inner step (JEM++: none).", type=float)
@_opt("--sampler-init", "Where the chains of each step start: buffer (persistent chains, PCD, as JEM) or data "
      "(CD-k: the batch's own images, k = --sgld-steps; no buffer).", type=click.Choice(["buffer", "data"]))
@_opt("--buffer-size", "Replay buffer chains.", type=int)
@_opt("--reinit-freq", "Fraction of each draw restarted from the init (JEM: 0.05).", type=float)
@_opt("--init", "Chain init: uniform (JEM) or gaussian (JEM++ per-class informative).",
      type=click.Choice(["uniform", "gaussian"]))
@_opt("--labels-per-class", "Semi-supervised: CE sees only N labelled images per class.", type=int)
@_opt("--train-sigma", "Gaussian noise on training inputs, model space (JEM: 0.03).", type=float)
@_opt("--energy-limit", "Divergence guard: stop when |E(x)| exceeds this.", type=float)
@click.option("--seed", type=int, default=None, help=f"Seed of every random draw; recorded. [default: {D['seed']}]")
@shared_options("device", "data_dir", "download")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@json_option
def train_cmd(dataset, out, resume, overwrite, device, data_dir, download, quiet, as_json, **options) -> None:
    """Train a JEM (default), JEM++ or plain-classifier checkpoint.

    \b
    L = CE(p(y|x)) + px_weight * (E(x_data) - E(x_sampled)),  E(x) = -logsumexp f(x)
    x_sampled: replay-buffer chains advanced by SGLD (or the JEM++ sampler); with
    --sampler-init data, CD-k chains started from the batch's own images.

    \b
    Examples:
      jembench train --lr 2e-3 --decay-epochs 8,10 --epochs 12 --out jem.pt   (= bundled:jem-digits)
      jembench train --lr 2e-3 --decay-epochs 8,10 --epochs 12 --px-weight 0 --out base.pt  (baseline)
      jembench train --sampler jem++ --init gaussian --norm batch --out jempp.pt
      jembench train --labels-per-class 10 --out semi.pt                      (semi-supervised)
      jembench train --sampler-init data --sgld-steps 5 --out cd5.pt         (CD-5, no replay buffer)
      jembench train --resume run.pt --epochs 20                              (continue to 20 epochs)
      jembench train --dataset cifar10 --depth 28 --width 10 --data-dir /data --device cuda

    \b
    A checkpoint is written after every epoch (config, history, optimizer and generator states:
    `jembench inspect FILE` shows them); if the loss or energies blow up, training stops with one
    line and the last good checkpoint stays. Same command, same weights on CPU (with the same
    thread count): every random draw comes from --seed. checkpoints/README.md has the exact
    commands and timings of the bundled checkpoints.
    """
    from ..training import train

    if options["decay_epochs"] is not None:
        options["decay_epochs"] = parse_list(options["decay_epochs"], int, "--decay-epochs")
    try:
        result = train(dataset, out=out, resume=resume, overwrite=overwrite, device=device, data_dir=data_dir,
                       download=download, progress=not quiet, **options)
    except JembenchError as exc:  # --json: stdout still says what happened (stderr gets the one line)
        if as_json:
            click.echo(json.dumps({"status": "failed", "error": str(exc), "kind": type(exc).__name__,
                                   **getattr(exc, "details", {})}, indent=2))
        raise
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    last = result.history[-1]
    click.echo(f"wrote {result.path}: {result.epochs_done} epochs, test accuracy {last['test_acc']:.4f}, "
               f"mean log p(test) - log p(uniform noise) {last['logp_gap']:.2f}, {result.wall_time_s:.0f} s")
