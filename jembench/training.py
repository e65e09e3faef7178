"""``jembench train``: the JEM / JEM++ objective (and the plain-classifier baseline) on a registered dataset.

Loss per step (Grathwohl et al. 2020, eq. 8; Yang & Ji 2021):

    L = CE(f(x_l), y_l) + px_weight * (E(x_data) - E(x_sampled)),   E(x) = -logsumexp_y f(x)[y]

``x_sampled`` are persistent chains (replay buffer, ``reinit_freq`` restarted from the init: uniform or
JEM++'s per-class Gaussians) advanced by SGLD or the JEM++ sampler; ``px_weight = 0`` drops the p(x) term
(baseline). Data get Gaussian noise ``train_sigma`` (JEM: 0.03); no augmentation. With
``labels_per_class = N`` the CE term only sees N labelled images per class (semi-supervised), p(x) all.

A checkpoint (native format) is written atomically after every epoch with the full config
(``train_config``) and a ``train_state`` (optimizer, epoch, generator states, buffer labels) for ``resume``.
A non-finite loss or |E| above ``energy_limit`` stops training with :class:`TrainingDiverged`; the last
good (end-of-epoch) checkpoint is left as it was.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import defaults
from .data import get_dataset
from .errors import JembenchError
from .models.checkpoints import NATIVE_FORMAT, read_checkpoint, save_native
from .models.hybrid import HybridModel, ModelInfo
from .models.wrn import NORMS, JEMNet
from .runtime import derive_seed, generator, randn, resolve_device
from .sampling import GaussianInit, JEMPPConfig, ReplayBuffer, SGLDConfig, UniformInit
from .sampling.sgld import run_sampler

FIXED_ON_RESUME = ("dataset", "depth", "width", "norm", "labels_per_class", "buffer_size", "init", "seed")
NOISE_PROBE = 256  # uniform-noise images whose mean log p~ is tracked against the test set's


class TrainingDiverged(JembenchError):
    """Non-finite loss or exploding energies; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What ``jembench train`` did: the checkpoint, its config, and one history row per epoch."""

    path: str
    config: dict[str, Any]
    epochs_done: int
    test_accuracy: Optional[float]
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def objective_name(config: dict[str, Any]) -> str:
    if not config["px_weight"]:
        return "classifier"
    return "jem++" if config["sampler"] == "jem++" else "jem"


def sampler_config(config: dict[str, Any]) -> SGLDConfig | JEMPPConfig:
    if config["sampler"] == "jem++":
        return JEMPPConfig(outer_steps=config["jempp_outer"], inner_steps=config["jempp_inner"],
                           step_size=config["jempp_step_size"], grad_clamp=config["grad_clamp"] or 1.0,
                           noise=config["jempp_noise"])
    return SGLDConfig(steps=config["sgld_steps"], step_size=config["sgld_step_size"], noise=config["sgld_noise"],
                      clamp_x=config["clamp_x"], grad_clamp=config["grad_clamp"])


def learning_rate(config: dict[str, Any], epoch: int, step: int) -> float:
    """lr x decay_rate^(decay epochs passed) x min(1, (step + 1) / warmup_steps): JEM's schedule, stateless
    (a resumed run gets the same rates)."""
    passed = sum(1 for e in config["decay_epochs"] or () if epoch > e)
    warm = min(1.0, (step + 1) / config["warmup_steps"]) if config["warmup_steps"] else 1.0
    return config["lr"] * config["decay_rate"] ** passed * warm


def select_labelled(labels: torch.Tensor, per_class: int, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices of ``per_class`` images of each class, drawn without replacement with ``gen``."""
    chosen = []
    for k in range(n_classes):
        pool = (labels == k).nonzero().flatten()
        if len(pool) < per_class:
            raise JembenchError(f"--labels-per-class {per_class}: class {k} has only {len(pool)} training images "
                                f"(use at most {min(int((labels == c).sum()) for c in range(n_classes))})")
        chosen.append(pool[torch.randperm(len(pool), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values


def _resolve_config(resume_cfg: Optional[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
    config = dict(defaults.TRAIN)
    if resume_cfg is not None:
        config.update({k: v for k, v in resume_cfg.items() if k in config})
    for key, value in overrides.items():
        if value is None:
            continue
        if resume_cfg is not None and key in FIXED_ON_RESUME and value != config[key]:
            raise JembenchError(f"--resume: {key} is {config[key]!r} in the checkpoint, cannot change it to "
                                f"{value!r} (start a new run instead)")
        config[key] = value
    if config["norm"] not in NORMS:
        raise JembenchError(f"unknown --norm {config['norm']!r}; choose one of {', '.join(NORMS)}")
    if config["sampler"] not in ("sgld", "jem++"):
        raise JembenchError(f"unknown --sampler {config['sampler']!r}; choose sgld or jem++")
    if config["init"] not in ("uniform", "gaussian"):
        raise JembenchError(f"unknown --init {config['init']!r}; choose uniform or gaussian (JEM++'s informative)")
    if (config["depth"] - 4) % 6 or config["depth"] < 10:
        raise JembenchError(f"--depth {config['depth']}: a WRN depth is 6n + 4 with n >= 1 (10, 16, 28, ...)")
    if config["epochs"] < 1 or config["batch_size"] < 1 or config["lr"] <= 0:
        raise JembenchError("--epochs and --batch-size must be >= 1 and --lr > 0")
    return config


def _model_info(config: dict[str, Any], shape: tuple[int, int, int], n_classes: int, name: str) -> ModelInfo:
    c, h, w = shape
    return ModelInfo(family="jembench", source_format=NATIVE_FORMAT, architecture="wrn", n_classes=n_classes,
                     in_channels=c, image_size=(h, w), depth=config["depth"], width=config["width"],
                     norm=config["norm"], dataset=config["dataset"], train_sigma=config["train_sigma"],
                     bn_momentum=0.9 if config["norm"] == "batch" else None, name=name,
                     notes=[f"trained by jembench train ({objective_name(config)})"])


@torch.no_grad()
def _evaluate(model: HybridModel, test, noise: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Clean test accuracy, mean log p~ of test images and of uniform noise (eval mode)."""
    model.eval()
    correct, logp, n = 0, 0.0, 0
    for x, y in test.batches(batch_size, model, model.device):
        logits, lp = model.logits_and_log_px(x)
        correct += int((logits.argmax(1) == y).sum())
        logp += float(lp.sum())
        n += len(x)
    logp_noise = float(torch.cat([model.log_px(b) for b in noise.split(batch_size)]).mean())
    return {"test_acc": correct / n, "logp_test": logp / n, "logp_noise": logp_noise,
            "logp_gap": logp / n - logp_noise}


def _check_writable(out: Path) -> None:
    """Refuse an --out that cannot be written now, not after the first epoch's work."""
    parent = out.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise JembenchError(f"--out {out}: {blocker} is a file, not a folder; choose another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JembenchError(f"--out {out}: cannot create folder {parent} ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise JembenchError(f"--out {out}: folder {parent} is not writable; choose another --out")


def train(dataset: Optional[str] = None, *, out: Optional[str | Path] = None, resume: Optional[str | Path] = None,
          overwrite: bool = False, device: Optional[str] = None, data_dir: Optional[str] = None,
          download: bool = False, progress: bool = True, **options: Any) -> TrainResult:
    """Train a JEM (``px_weight > 0``), JEM++ (``sampler="jem++"``, ``init="gaussian"``) or a plain classifier
    (``px_weight=0``) and write it to ``out`` in jembench's native format; mirrors ``jembench train``.

    ``options`` are the keys of ``jembench.defaults.TRAIN`` (``epochs``, ``lr``, ``sgld_steps``, ...); None
    means the default, or, with ``resume``, the value stored in that checkpoint (``epochs`` is the total).
    """
    unknown = set(options) - set(defaults.TRAIN)
    if unknown:
        raise TypeError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(defaults.TRAIN)}")
    t_start = time.perf_counter()
    state: Optional[dict[str, Any]] = None
    saved: Optional[dict[str, Any]] = None
    if resume is not None:
        if not Path(resume).is_file():
            raise JembenchError(f"--resume {resume}: {'is a directory' if Path(resume).is_dir() else 'no such file'}; "
                                "give a checkpoint written by jembench train")
        saved = read_checkpoint(resume)
        if not (isinstance(saved, dict) and saved.get("format") == NATIVE_FORMAT and "train_state" in saved):
            raise JembenchError(f"--resume {resume}: not a jembench training checkpoint (no train_state); "
                                "only files written by jembench train can be resumed")
        state = saved["train_state"]
    config = _resolve_config(saved["train_config"] if saved else None, {"dataset": dataset, **options})
    objective = objective_name(config)
    default_out = resume if resume is not None else f"runs/{objective}-{config['dataset']}.pt"
    out = Path(out if out is not None else default_out)
    if out.is_dir():
        raise JembenchError(f"--out {out} is a directory; give a file name, e.g. {out / 'jem.pt'}")
    if out.exists() and resume is None and not overwrite:
        raise JembenchError(f"{out} exists; pass --resume {out} to continue it, --overwrite to replace it, "
                            "or another --out")
    _check_writable(out)
    dev = resolve_device(device)

    train_set = get_dataset(config["dataset"], "train", data_dir=data_dir, download=download)
    test_set = get_dataset(config["dataset"], "test", data_dir=data_dir, download=download)
    if train_set.split != "train" or test_set.split != "test":
        raise JembenchError(f"dataset {config['dataset']!r} has no separate train and test splits (it would be "
                            "tested on its training images); for npz:PATH store x_train, y_train, x_test, y_test")
    if train_set.labels is None or not train_set.n_classes:
        raise JembenchError(f"dataset {config['dataset']!r} has no labels; training needs a labelled dataset")
    n_classes, shape = train_set.n_classes, train_set.shape

    with torch.random.fork_rng(devices=[]):  # the only global-RNG use: weight initialisation, seeded
        torch.manual_seed(derive_seed(config["seed"], "init"))
        net = JEMNet(config["depth"], config["width"], config["norm"], shape[0], n_classes)
    model = HybridModel(net, _model_info(config, shape, n_classes, out.stem)).to(dev)
    if saved is not None:
        model.net.load_state_dict(saved["model_state_dict"])

    gen_data = generator(derive_seed(config["seed"], "train-data"))  # order, labelled draws (CPU)
    gen_chain = generator(derive_seed(config["seed"], "train-chains"), dev)  # input noise, buffer, sampler
    images = train_set.images.to(dev)
    labels = train_set.labels.to(dev)
    lo, hi = model.info.value_range
    labelled = None
    if config["labels_per_class"] is not None:
        labelled = select_labelled(train_set.labels, config["labels_per_class"], n_classes,
                                   generator(derive_seed(config["seed"], "labels"))).to(dev)

    extras: dict[str, Any] = {}
    if config["init"] == "gaussian":  # fitted on the labelled images only: JEM++ uses the training labels
        fit_idx = labelled if labelled is not None else torch.arange(len(images), device=dev)
        init = GaussianInit.fit(model.to_model_space(images[fit_idx].float() / 255).cpu(), labels[fit_idx].cpu(),
                                n_classes, lo, hi)
        init.means, init.chol = init.means.to(dev), init.chol.to(dev)
        extras = init.to_extras()
    else:
        init = UniformInit(shape, lo, hi)
    buffer = None
    if config["px_weight"]:
        buffer = ReplayBuffer(config["buffer_size"], init, gen_chain, reinit_freq=config["reinit_freq"],
                              n_classes=n_classes)
    sampler = sampler_config(config)
    bn_train = config["sampler"] == "jem++" and config["norm"] == "batch"  # JEM++ samples with BN in train mode

    params = model.net.parameters()
    if config["optimizer"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config["lr"], weight_decay=config["weight_decay"])
    elif config["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
    else:
        raise JembenchError(f"unknown --optimizer {config['optimizer']!r}; choose adam or sgd")

    start_epoch, step, history = 0, 0, []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # the (possibly overridden) config wins over the saved hyper-parameters
            group["weight_decay"] = config["weight_decay"]
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        gen_data.set_state(state["rng"]["data"])
        gen_chain.set_state(state["rng"]["chains"])
        if buffer is not None:
            if saved.get("replay_buffer") is None:
                raise JembenchError(f"--resume {resume}: the checkpoint has no replay buffer to continue the chains")
            buffer.load(saved["replay_buffer"], state.get("buffer", {}))
    if start_epoch >= config["epochs"]:
        raise JembenchError(f"--resume {resume}: already trained for {start_epoch} epochs; pass --epochs N > "
                            f"{start_epoch} (the total) to continue")
    noise_probe = lo + (hi - lo) * torch.rand((NOISE_PROBE, *shape), generator=generator(
        derive_seed(config["seed"], "noise-probe"))).to(dev)

    def to_input(idx: torch.Tensor) -> torch.Tensor:
        x = model.to_model_space(images[idx].float() / 255)
        return x + config["train_sigma"] * randn(tuple(x.shape), gen_chain, x) if config["train_sigma"] else x

    good = {"epoch": start_epoch if resume is not None else None}  # epoch of the last checkpoint written to out

    def diverged(epoch: int, why: str) -> TrainingDiverged:
        kept = (f"the last good checkpoint (epoch {good['epoch']}) is kept at {out}" if good["epoch"] is not None
                and out.exists() else "no checkpoint was written yet")
        return TrainingDiverged(f"training diverged at epoch {epoch}, step {step}: {why}; {kept}; lower --lr, add "
                                "--warmup-steps or fewer/smaller sampler steps, then --resume")

    if not history:  # epoch 0: the untrained model, the reference for what training achieved
        history.append({"epoch": 0, **_evaluate(model, test_set, noise_probe, 256)})
    n, bs = len(images), config["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    for epoch in range(start_epoch + 1, config["epochs"] + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen_data).to(dev)
        sums = {"loss": 0.0, "ce": 0.0, "correct": 0, "seen": 0}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config['epochs']}", disable=not progress,
                   unit="step", leave=True, dynamic_ncols=True)
        for b in bar:
            model.train()
            idx = perm[b * bs:(b + 1) * bs]
            x = to_input(idx)
            for group in opt.param_groups:
                group["lr"] = learning_rate(config, epoch, step)
            if buffer is not None:  # chains first (as JEM): the sampler's own passes build no training graph
                x0, slots = buffer.sample(len(idx))
                xq = run_sampler(model, x0, sampler, gen_chain, value_range=(lo, hi), bn_train=bn_train)
                buffer.update(slots, xq)
            if labelled is None:
                logits, lp_data = model.logits_and_log_px(x)
                y = labels[idx]
            else:
                li = labelled[torch.randint(len(labelled), (len(idx),), generator=gen_data).to(dev)]
                logits, y = model.logits(to_input(li)), labels[li]
                lp_data = model.log_px(x) if buffer is not None else None
            ce = F.cross_entropy(logits, y)
            loss, worst = ce, 0.0
            if buffer is not None:
                lp_q = model.log_px(xq)
                loss = ce + config["px_weight"] * (lp_q.mean() - lp_data.mean())  # E(x_data) - E(x_sampled)
                worst = float(torch.cat([lp_data.detach().abs(), lp_q.detach().abs()]).max())
            step += 1
            if not math.isfinite(float(loss.detach())):
                raise diverged(epoch, f"loss is {float(loss.detach())}")
            if worst > config["energy_limit"] or not math.isfinite(worst):
                raise diverged(epoch, f"|E(x)| reached {worst:.3g} > --energy-limit {config['energy_limit']:g}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += float(loss.detach()) * len(idx)
            sums["ce"] += float(ce.detach()) * len(idx)
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["seen"] += len(idx)
            bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.3f}", acc=f"{sums['correct'] / sums['seen']:.3f}")
        if not all(torch.isfinite(p).all() for p in model.net.parameters()):
            raise diverged(epoch, "non-finite weights after the last step")
        row = {"epoch": epoch, "loss": sums["loss"] / sums["seen"], "ce": sums["ce"] / sums["seen"],
               "train_acc": sums["correct"] / sums["seen"], **_evaluate(model, test_set, noise_probe, 256)}
        row["seconds"] = time.perf_counter() - t0
        if not math.isfinite(row["logp_test"]) or abs(row["logp_test"]) > config["energy_limit"]:
            raise diverged(epoch, f"mean log p~(test) is {row['logp_test']:.3g}")
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}")
        bar.close()
        model.info.train_config = {**config, "objective": objective, "augmentation": "none",
                                   "sampler_config": sampler.to_dict() if buffer is not None else None,
                                   "init_config": init.describe() if buffer is not None else None,
                                   "bn_train_sampling": bn_train if buffer is not None else None, "epochs_done": epoch,
                                   "test_accuracy": row["test_acc"], "history": history}
        train_state = {"epoch": epoch, "step": step, "optimizer": opt.state_dict(), "history": history,
                       "rng": {"data": gen_data.get_state(), "chains": gen_chain.get_state()},
                       "buffer": buffer.state() if buffer is not None else {}}
        save_native(model, out, replay_buffer=buffer.data if buffer is not None else None, train_state=train_state,
                    extras=extras)
        good["epoch"] = epoch
    model.eval()
    return TrainResult(path=str(out), config=config, epochs_done=history[-1]["epoch"] if history else 0,
                       test_accuracy=history[-1]["test_acc"] if history else None, history=history,
                       wall_time_s=time.perf_counter() - t_start)
