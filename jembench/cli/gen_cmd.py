"""``jembench gen``: samples under named protocols, scored with IS / FID / KID / precision-recall (torch-fidelity)."""

from __future__ import annotations

import click

from .. import defaults
from .options import (cache_dir_option, checkpoints_argument, common_options, emit, head_option, json_option,
                      norm_option, out_dir_option, parse_list, resolve_checkpoints, save_raw_option)


@click.command("gen")
@checkpoints_argument
@click.option("--n", type=int, default=None,
              help=f"Samples per protocol [default: {defaults.GEN_N} fresh chains; the whole replay buffer]. "
                   "FID is biased in N: compare equal N only.")
@click.option("--protocol", "protocols", multiple=True, metavar="NAME",
              help="Sampling protocol, repeatable or comma list: sgld (fresh chains from U(-1,1), JEM SGLD), "
                   "pcd (JEM's uncond_samples: PCD rounds into a buffer of N chains), jem++ (per-class Gaussian "
                   "init, JEM++ sampler), conditional (SGLD on f(x)[y], N/K per class), buffer (the checkpoint's "
                   "replay buffer), buffer-top (its most confident fraction per class, as SADA-JEM). "
                   f"[default: {','.join(defaults.GEN_PROTOCOLS)}]")
@click.option("--steps", type=int, default=None,
              help=f"SGLD steps per chain (JEM++ sampler: outer steps M) [default: sgld {defaults.GEN_SGLD_STEPS}, "
                   "jem++ 10].")
@click.option("--step-size", type=float, default=None, help="SGLD step size [default: 1.0; JEM++ 0.2].")
@click.option("--noise", type=float, default=None, help="SGLD noise std [default: 0.01; JEM++ 0].")
@click.option("--init", type=click.Choice(["uniform", "gaussian"]), default=None,
              help="Chain init: U(-1,1) or the per-class Gaussians fitted on the training split "
                   "[default: per protocol].")
@click.option("--conditional", is_flag=True, default=None, help="Class-conditional chains for every fresh protocol.")
@click.option("--pcd-rounds", type=int, default=None,
              help=f"pcd protocol: rounds of a batch drawn from the buffer, advanced, written back; cost "
                   f"rounds x batch x steps whatever --n [default: {defaults.GEN_PCD_ROUNDS}].")
@click.option("--pcd-batch", type=int, default=None,
              help=f"pcd protocol: chains per round [default: {defaults.GEN_PCD_BATCH}].")
@click.option("--reinit-freq", type=float, default=None,
              help=f"pcd protocol: share of each draw restarted from the init [default: {defaults.GEN_REINIT_FREQ}].")
@click.option("--buffer-top", type=float, default=None,
              help=f"buffer-top: fraction kept per predicted class, by max softmax "
                   f"[default: {defaults.GEN_BUFFER_TOP}; SADA-JEM: 0.1 for IS, 0.9 for FID].")
@click.option("--metrics", "metric_list", default=",".join(defaults.GEN_METRICS), show_default=True,
              help="Comma list of is, fid, kid, prc (precision/recall).")
@click.option("--reference", type=click.Choice(["train", "test", "train+test"]), default=defaults.GEN_REFERENCE_SPLIT,
              show_default=True, help="Reference split for FID/KID/PRC (JEM++ used train+test).")
@click.option("--dataset", default=None, metavar="NAME", help="Reference dataset [default: the checkpoint's].")
@click.option("--feature-extractor", default=defaults.GEN_FEATURE_EXTRACTOR, show_default=True, metavar="NAME|PATH",
              help="auto (the dataset's bundled reference classifier, e.g. digits-wrn; else Inception), inception "
                   "(torch-fidelity's), digits-wrn, or a jembench classifier checkpoint trained on the dataset. "
                   "digits-wrn is looked up in $JEMBENCH_EXTRACTORS, the checkout's checkpoints/, then ./checkpoints.")
@click.option("--fid-weights", type=click.Path(dir_okay=False), default=None,
              help="torch-fidelity's Inception weights file (weights-inception-2015-12-05-6726825d.pth), for "
                   "machines without internet.")
@click.option("--offline", is_flag=True,
              help="Never download; fail at once if Inception weights are needed and absent.")
@click.option("--kid-subset-size", type=int, default=defaults.GEN_KID_SUBSET_SIZE, show_default=True,
              help="KID subset size (capped at the smaller set; recorded).")
@click.option("--kid-subsets", type=int, default=defaults.GEN_KID_SUBSETS, show_default=True)
@click.option("--isc-splits", type=int, default=defaults.GEN_ISC_SPLITS, show_default=True)
@head_option
@norm_option
@cache_dir_option
@save_raw_option
@json_option
@out_dir_option("gen")
@common_options
def gen_cmd(checkpoints, n, protocols, steps, step_size, noise, init, conditional, pcd_rounds, pcd_batch, reinit_freq,
            buffer_top, metric_list, reference, dataset, feature_extractor, fid_weights, offline, kid_subset_size,
            kid_subsets, isc_splits, head, norm, cache_dir, save_raw, as_json, out_dir, device, seed, batch_size,
            data_dir, download):
    """Generation: draw samples under each protocol, score IS / FID / KID / precision-recall.

    Samples are quantised like real images (clamp to the data range, round to uint8) before any metric.
    Metric names carry the feature extractor and reference split (fid/digits-wrn/train): numbers from
    different extractors never share a column. Reference features are cached on disk by content
    (--cache-dir, default ~/.cache/jembench/fidelity). Writes results.json, sample grids (pixels as
    sampled) and, with --save-raw, the uint8 samples (npz). CKPT defaults to $JEMBENCH_CKPT.

    \b
    Examples:
      jembench gen checkpoints/jem-digits.pt                          1000 fresh SGLD samples, digits-wrn extractor
      jembench gen ckpt.pt --protocol pcd,conditional --n 500 --steps 40
      jembench gen jem.pt --protocol buffer --reference train+test    JEM++'s protocol (replay buffer vs train+test)
      jembench gen jem.pt --protocol buffer-top --buffer-top 0.1 --metrics is
      jembench gen jem.pt --offline --fid-weights weights-inception-2015-12-05-6726825d.pth
    """
    from ..evaluators.common import echo_written
    from ..evaluators.gen import gen

    protos = parse_list(",".join(protocols), str, "protocol") or list(defaults.GEN_PROTOCOLS)
    result = gen(resolve_checkpoints(checkpoints), n=n, protocol=protos, seed=seed, out_dir=out_dir, device=device,
                 batch_size=batch_size, dataset=dataset, data_dir=data_dir, download=download, reference=reference,
                 metrics=parse_list(metric_list, str, "metric"), feature_extractor=feature_extractor,
                 fid_weights=fid_weights, offline=offline, cache_dir=cache_dir, isc_splits=isc_splits,
                 kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, save_raw=save_raw, head=head, norm=norm,
                 steps=steps, step_size=step_size, noise=noise, init=init, conditional=conditional or None,
                 pcd_rounds=pcd_rounds, pcd_batch=pcd_batch, reinit_freq=reinit_freq, buffer_top=buffer_top)
    emit(result.to_dict(), as_json, _summary(result))
    echo_written(out_dir)


def _summary(result) -> str:
    lines = []
    for ev in result.evaluations:
        name = f"{ev.checkpoint.get('name')} / {ev.protocol.get('sampling', {}).get('name')}"
        if ev.status != "ok":
            lines.append(f"{name}: failed: {ev.error}")
            continue
        shown = {k: v for k, v in ev.metrics.items() if not k.startswith(("time/", "is_std", "kid_std"))}
        nums = ", ".join(f"{k} = {v:.4g}" for k, v in shown.items())
        t = ev.metrics
        lines.append(f"{name} (n={ev.protocol['n']}, extractor {ev.protocol['feature_extractor']['name']}): {nums}; "
                     f"sampling {t['time/sampling_s']:.1f}s, features {t['time/features_s']:.1f}s")
        lines += [f"  warning: {w}" for w in ev.warnings]
    return "\n".join(lines)
