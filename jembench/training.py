"""``jembench train``: the JEM / JEM++ objective (and the plain-classifier baseline) on a registered dataset.

Loss per step (Grathwohl et al. 2020, eq. 8; Yang & Ji 2021):

    L = CE(f(x_l), y_l) + px_weight * (E(x_data) - E(x_sampled)),   E(x) = -logsumexp_y f(x)[y]

``x_sampled`` are persistent chains (PCD: replay buffer, ``reinit_freq`` restarted from the init: uniform or
JEM++'s per-class Gaussians) advanced by SGLD or the JEM++ sampler; with ``sampler_init = "data"`` they are
contrastive divergence chains instead (CD-k, Hinton 2002: k = ``sgld_steps`` steps started from the batch's own
input images, no buffer); ``px_weight = 0`` drops the p(x) term (baseline). Data get Gaussian noise
``train_sigma`` (JEM: 0.03); no augmentation. With ``labels_per_class = N`` the CE term only sees N labelled
images per class (semi-supervised), p(x) all.

A checkpoint (native format) is written atomically after every epoch with the full config
(``train_config``) and a ``train_state`` (optimizer, epoch, generator states, buffer labels) for ``resume``.
A non-finite loss or |E| above ``energy_limit`` stops training with :class:`TrainingDiverged`; the last
good (end-of-epoch) checkpoint is left as it was.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import defaults
from .data import ImageSet
from .errors import JembenchError
from .models.checkpoints import NATIVE_FORMAT, save_native
from .models.hybrid import HybridModel, ModelInfo
from .models.wrn import JEMNet
from .runtime import derive_seed, generator, randn, resolve_device
from .sampling import GaussianInit, JEMPPConfig, ReplayBuffer, SGLDConfig, UniformInit
from .sampling.sgld import run_sampler
from .training_setup import load_splits, read_resume, resolve_config, resolve_out

CHAINS = {"buffer": "PCD: persistent chains from the replay buffer",
          "data": "CD-k: chains start from the batch's own input images, k = the sampler's steps"}
NOISE_PROBE = 256  # uniform-noise images whose mean log p~ is tracked against the test set's


class TrainingDiverged(JembenchError):
    """Non-finite loss or exploding energies; the last good checkpoint is kept. ``details``: epoch, step, why,
    the checkpoint kept (or None) and its epoch (``train --json`` prints them)."""

    details: dict[str, Any] = {}


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
    saved = read_resume(resume)
    config = resolve_config(saved["train_config"] if saved else None, {"dataset": dataset, **options})
    out = resolve_out(out, resume, overwrite, f"runs/{objective_name(config)}-{config['dataset']}.pt")
    dev = resolve_device(device)
    train_set, test_set = load_splits(config, data_dir, download)
    run = _Run(config, train_set, test_set, out, dev, saved, resume, progress)
    run.fit()
    last = run.history[-1]
    return TrainResult(path=str(out), config=config, epochs_done=last["epoch"], test_accuracy=last["test_acc"],
                       history=run.history, wall_time_s=time.perf_counter() - t_start)


def _build_model(config: dict[str, Any], train_set: ImageSet, name: str, dev: torch.device,
                 saved: Optional[dict[str, Any]]) -> HybridModel:
    """The WRN hybrid on ``dev``: weights drawn from the seed, or the resumed ones."""
    n_classes, shape = train_set.n_classes, train_set.shape
    with torch.random.fork_rng(devices=[]):  # the only global-RNG use: weight initialisation, seeded
        torch.manual_seed(derive_seed(config["seed"], "init"))
        net = JEMNet(config["depth"], config["width"], config["norm"], shape[0], n_classes)
    model = HybridModel(net, _model_info(config, shape, n_classes, name)).to(dev)
    if saved is not None:
        model.net.load_state_dict(saved["model_state_dict"])
    return model


def _make_optimizer(config: dict[str, Any], params) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9, at the configured lr and weight decay."""
    if config["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=config["lr"], weight_decay=config["weight_decay"])
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
    raise JembenchError(f"unknown --optimizer {config['optimizer']!r}; choose adam or sgd")


class _Run:
    """One training run: model, optimizer, data and chains (built in a fixed order), its epochs and checkpoints."""

    def __init__(self, config: dict[str, Any], train_set: ImageSet, test_set: ImageSet, out: Path,
                 dev: torch.device, saved: Optional[dict[str, Any]], resume: Optional[str | Path], progress: bool):
        self.config, self.test_set, self.out, self.dev, self.progress = config, test_set, out, dev, progress
        self.model = _build_model(config, train_set, out.stem, dev, saved)
        self.model.check_outputs = False  # divergence has its own guard here (_diverged: which checkpoint is kept)
        self.gen_data = generator(derive_seed(config["seed"], "train-data"))  # order, labelled draws (CPU)
        self.gen_chain = generator(derive_seed(config["seed"], "train-chains"), dev)  # input noise, buffer, sampler
        self.images, self.labels = train_set.images.to(dev), train_set.labels.to(dev)
        self.lo, self.hi = self.model.info.value_range
        self.labelled = None
        if config["labels_per_class"] is not None:
            self.labelled = select_labelled(train_set.labels, config["labels_per_class"], train_set.n_classes,
                                            generator(derive_seed(config["seed"], "labels"))).to(dev)
        self.init, self.extras = self._chain_init(train_set.n_classes, train_set.shape)
        self.px = bool(config["px_weight"])  # the p(x) term, with its sampled chains
        self.buffer = ReplayBuffer(config["buffer_size"], self.init, self.gen_chain, reinit_freq=config["reinit_freq"],
                                   n_classes=train_set.n_classes) if self.px and config["sampler_init"] == "buffer" \
            else None
        self.sampler = sampler_config(config)
        self.bn_train = config["sampler"] == "jem++" and config["norm"] == "batch"  # JEM++ samples with BN in train
        self.opt = _make_optimizer(config, self.model.net.parameters())
        self.start_epoch, self.step, self.history = self._restore(saved, resume)
        probe_gen = generator(derive_seed(config["seed"], "noise-probe"))
        probe = torch.rand((NOISE_PROBE, *train_set.shape), generator=probe_gen)
        self.noise_probe = self.lo + (self.hi - self.lo) * probe.to(dev)
        self.good_epoch = self.start_epoch if resume is not None else None  # of the last checkpoint written to out

    def _chain_init(self, n_classes: int, shape: tuple[int, int, int]) -> tuple[GaussianInit | UniformInit, dict]:
        """The chains' init and its checkpoint extras; JEM++'s Gaussians are fitted on the labelled images only."""
        if self.config["init"] != "gaussian":
            return UniformInit(shape, self.lo, self.hi), {}
        fit_idx = self.labelled if self.labelled is not None else torch.arange(len(self.images), device=self.dev)
        init = GaussianInit.fit(self.model.to_model_space(self.images[fit_idx].float() / 255).cpu(),
                                self.labels[fit_idx].cpu(), n_classes, self.lo, self.hi)
        init.means, init.chol = init.means.to(self.dev), init.chol.to(self.dev)
        return init, init.to_extras()

    def _restore(self, saved: Optional[dict[str, Any]], resume: Optional[str | Path]) -> tuple[int, int, list]:
        """Optimizer, generator and buffer states from ``saved``; the epoch, step and history to go on from."""
        start_epoch, step, history = 0, 0, []
        if saved is not None:
            state = saved["train_state"]
            self.opt.load_state_dict(state["optimizer"])
            for group in self.opt.param_groups:  # the (possibly overridden) config wins over the saved values
                group["weight_decay"] = self.config["weight_decay"]
            start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
            self.gen_data.set_state(state["rng"]["data"])
            self.gen_chain.set_state(state["rng"]["chains"])
            if self.buffer is not None:
                if saved.get("replay_buffer") is None:
                    raise JembenchError(f"--resume {resume}: the checkpoint has no replay buffer to continue the "
                                        "chains")
                self.buffer.load(saved["replay_buffer"], state.get("buffer", {}))
        if start_epoch >= self.config["epochs"]:
            raise JembenchError(f"--resume {resume}: already trained for {start_epoch} epochs; pass --epochs N > "
                                f"{start_epoch} (the total) to continue")
        return start_epoch, step, history

    def fit(self) -> None:
        """The remaining epochs, each ending with a checkpoint."""
        if not self.history:  # epoch 0: the untrained model, the reference for what training achieved
            self.history.append({"epoch": 0, **_evaluate(self.model, self.test_set, self.noise_probe, 256)})
        for epoch in range(self.start_epoch + 1, self.config["epochs"] + 1):
            self._epoch(epoch)
        self.model.eval()

    def _epoch(self, epoch: int) -> None:
        """One pass over the training images in a fresh order, with a progress bar of running loss and accuracy."""
        n, bs = len(self.images), self.config["batch_size"]
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=self.gen_data).to(self.dev)
        sums = {"loss": 0.0, "ce": 0.0, "correct": 0, "seen": 0}
        bar = tqdm(range(math.ceil(n / bs)), desc=f"epoch {epoch}/{self.config['epochs']}",
                   disable=not self.progress, unit="step", leave=True, dynamic_ncols=True)
        for b in bar:
            idx = perm[b * bs:(b + 1) * bs]
            loss, ce, logits, y = self._step(epoch, idx)
            sums["loss"] += float(loss.detach()) * len(idx)
            sums["ce"] += float(ce.detach()) * len(idx)
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["seen"] += len(idx)
            bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.3f}", acc=f"{sums['correct'] / sums['seen']:.3f}")
        self._finish_epoch(epoch, sums, t0, bar)

    def _step(self, epoch: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on the images ``idx``; returns the loss, the CE term, the logits and their labels."""
        self.model.train()
        x = self._to_input(idx)
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(self.config, epoch, self.step)
        if self.px:  # chains first (as JEM): the sampler's own passes build no training graph
            # PCD: chains drawn from the replay buffer; CD-k: from the batch's own images
            x0, slots = self.buffer.sample(len(idx)) if self.buffer is not None else (x.detach(), None)
            xq = run_sampler(self.model, x0, self.sampler, self.gen_chain, value_range=(self.lo, self.hi),
                             bn_train=self.bn_train)
            if self.buffer is not None:
                self.buffer.update(slots, xq)
        logits, y, lp_data = self._data_terms(x, idx)
        ce = F.cross_entropy(logits, y)
        loss, worst = ce, 0.0
        if self.px:
            lp_q = self.model.log_px(xq)
            loss = ce + self.config["px_weight"] * (lp_q.mean() - lp_data.mean())  # E(x_data) - E(x_sampled)
            worst = float(torch.cat([lp_data.detach().abs(), lp_q.detach().abs()]).max())
        self.step += 1
        if not math.isfinite(float(loss.detach())):
            raise self._diverged(epoch, f"loss is {float(loss.detach())}")
        if worst > self.config["energy_limit"] or not math.isfinite(worst):
            raise self._diverged(epoch, f"|E(x)| reached {worst:.3g} > --energy-limit {self.config['energy_limit']:g}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss, ce, logits, y

    def _to_input(self, idx: torch.Tensor) -> torch.Tensor:
        """Training images ``idx`` in model space, plus the ``train_sigma`` input noise."""
        x = self.model.to_model_space(self.images[idx].float() / 255)
        sigma = self.config["train_sigma"]
        return x + sigma * randn(tuple(x.shape), self.gen_chain, x) if sigma else x

    def _data_terms(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits and labels for CE (a labelled draw when semi-supervised) and log p~ of ``x`` (None if unused)."""
        if self.labelled is None:
            logits, lp_data = self.model.logits_and_log_px(x)
            return logits, self.labels[idx], lp_data
        li = self.labelled[torch.randint(len(self.labelled), (len(idx),), generator=self.gen_data).to(self.dev)]
        logits, y = self.model.logits(self._to_input(li)), self.labels[li]
        return logits, y, self.model.log_px(x) if self.px else None

    def _finish_epoch(self, epoch: int, sums: dict[str, float], t0: float, bar: tqdm) -> None:
        """Check the weights and test energies, add the history row, write the checkpoint."""
        if not all(torch.isfinite(p).all() for p in self.model.net.parameters()):
            raise self._diverged(epoch, "non-finite weights after the last step")
        row = {"epoch": epoch, "loss": sums["loss"] / sums["seen"], "ce": sums["ce"] / sums["seen"],
               "train_acc": sums["correct"] / sums["seen"],
               **_evaluate(self.model, self.test_set, self.noise_probe, 256)}
        row["seconds"] = time.perf_counter() - t0
        if not math.isfinite(row["logp_test"]) or abs(row["logp_test"]) > self.config["energy_limit"]:
            raise self._diverged(epoch, f"mean log p~(test) is {row['logp_test']:.3g}")
        self.history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}")
        bar.close()
        self._save(epoch, row["test_acc"])

    def _save(self, epoch: int, test_acc: float) -> None:
        """Write the checkpoint atomically: weights, config, history, optimizer, generator and buffer states."""
        chains, pcd = self.px, self.buffer is not None
        self.model.info.train_config = {**self.config, "objective": objective_name(self.config), "augmentation": "none",
                                        "sampler_config": self.sampler.to_dict() if chains else None,
                                        "chains": (CHAINS[self.config["sampler_init"]] if chains else None),
                                        "init_config": self.init.describe() if pcd else None,
                                        "bn_train_sampling": self.bn_train if chains else None,
                                        "epochs_done": epoch, "test_accuracy": test_acc, "history": self.history}
        train_state = {"epoch": epoch, "step": self.step, "optimizer": self.opt.state_dict(), "history": self.history,
                       "rng": {"data": self.gen_data.get_state(), "chains": self.gen_chain.get_state()},
                       "buffer": self.buffer.state() if pcd else {}}
        save_native(self.model, self.out, replay_buffer=self.buffer.data if pcd else None, train_state=train_state,
                    extras=self.extras)
        self.good_epoch = epoch

    def _diverged(self, epoch: int, why: str) -> TrainingDiverged:
        """The error to raise at ``epoch``, saying which checkpoint (if any) is kept."""
        kept = (f"the last good checkpoint (epoch {self.good_epoch}) is kept at {self.out}"
                if self.good_epoch is not None and self.out.exists() else "no checkpoint was written yet")
        err = TrainingDiverged(f"training diverged at epoch {epoch}, step {self.step}: {why}; {kept}; lower --lr, "
                               "add --warmup-steps or fewer/smaller sampler steps, then --resume")
        good = self.good_epoch is not None and self.out.exists()
        err.details = {"epoch": epoch, "step": self.step, "why": why, "checkpoint": str(self.out) if good else None,
                       "last_good_epoch": self.good_epoch if good else None}
        return err
