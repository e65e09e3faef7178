"""Plumbing every evaluator shares: loading checkpoints, choosing datasets, timing, writing results.

Models and data are imported when used: the evaluator modules import this one, and listing their options
(``jembench COMMAND --help``) imports no torch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from .. import defaults
from ..errors import DatasetError, JembenchError
from ..results import Evaluation, provenance, write_results
from ..runtime import accelerate, resolve_device

if TYPE_CHECKING:
    from ..data.imageset import ImageSet
    from ..models import HybridModel


def load_models(checkpoints: Sequence[str | Path | HybridModel], device: Any = None, *,
                dataset: Optional[str] = None, precision: str = "fp32", problems: Optional[list[Any]] = None,
                **overrides: Any) -> list[HybridModel]:
    """Checkpoint paths (or HybridModels, passed through) -> HybridModels on ``device``, passes at ``precision``
    (on CUDA: channels-last weights, ``cudnn.benchmark``; :func:`jembench.runtime.accelerate`).

    ``dataset`` is the evaluation dataset the user named: files that record none (JEM / JEM++) take their
    image size from it and are checked against its class count. Non-finite weights are refused. With a
    ``problems`` list, each checkpoint that cannot be loaded adds its one-line error there (the preflight) instead
    of raising; the others are returned."""
    from ..models import HybridModel, load
    from ..models.finite import check_state

    dev = resolve_device(device)
    models = []
    for c in checkpoints:
        try:
            m = c if isinstance(c, HybridModel) else load(c, default_dataset=dataset,
                                                          **{k: v for k, v in overrides.items() if v is not None})
            if isinstance(c, HybridModel):  # files are checked by load
                check_state(m.state_dict(), f"model {m.info.name!r}")
        except JembenchError as exc:
            if problems is None:
                raise
            problems.append(exc)
            continue
        m = accelerate(m.to(dev), dev).eval()
        m.precision = precision
        models.append(m)
    return models


def load_for_preflight(checkpoints: Any, shared: Any, problems: list[Any], *,
                       dataset: Optional[str] = None) -> list[HybridModel]:
    """The preflight's models: ``checkpoints`` (one or a list) on this rank's device at the run's precision, with
    ``shared``'s model overrides; no checkpoint, and each that does not load, is a line in ``problems``. Without
    valid shared settings (``shared`` None) nothing is loaded."""
    from .. import distributed
    from ..models import HybridModel

    if isinstance(checkpoints, (str, Path, HybridModel)):
        checkpoints = [checkpoints]
    if not checkpoints:
        problems.append("no checkpoint given: pass one or more checkpoint files (or HybridModels)")
    if shared is None or not checkpoints:
        return []
    return load_models(list(checkpoints), distributed.start(resolve_device(shared.device)), dataset=dataset,
                       precision=shared.precision, problems=problems, **shared.overrides())


def default_dataset(model: HybridModel) -> str:
    """The dataset recorded in the checkpoint; JEM / JEM++ files record none and mean CIFAR-10
    (CIFAR-100 for 100-class files)."""
    if model.info.dataset:
        return model.info.dataset
    return "cifar100" if model.info.n_classes == 100 else defaults.DEFAULT_DATASET_JEM_FILES


def eval_set_size(model: HybridModel, dataset: Optional[str | ImageSet], split: str, n: Optional[int]
                  ) -> tuple[str, int]:
    """Name and number of images of the evaluation set a step will read (declared sizes: nothing is loaded)."""
    from ..cost import set_size
    from ..data.imageset import ImageSet

    if isinstance(dataset, ImageSet):
        return dataset.name, len(dataset.first(n))
    name = dataset or default_dataset(model)
    return name, set_size(name, split, n)


def forward_key(name: str, split: str, n: int, sigma: float, seed: int, refine: Any = None) -> str:
    """What identifies a shared forward pass (the :class:`~jembench.forward.ForwardCache` reuses it)."""
    return f"{name}/{split}/n={n}/sigma={sigma:g}/seed={seed}/refine={refine.to_dict() if refine else None}"


def check_compatible(model: HybridModel, imageset: ImageSet, *, need_labels: bool = True) -> None:
    """One-line errors for class-count or input-shape contradictions between a model and a dataset."""
    name = model.info.name
    if need_labels and imageset.labels is None:
        raise DatasetError(f"dataset {imageset.name!r} has no labels; this evaluation needs labelled data")
    if need_labels and imageset.n_classes is not None and imageset.n_classes != model.info.n_classes:
        raise DatasetError(f"checkpoint {name!r} has {model.info.n_classes} classes but dataset {imageset.name!r} "
                           f"has {imageset.n_classes}: choose the matching --dataset (or the right checkpoint)")
    if need_labels and len(imageset.labels) and int(imageset.labels.max()) >= model.info.n_classes:
        raise DatasetError(f"dataset {imageset.name!r} has label {int(imageset.labels.max())} but checkpoint "
                           f"{name!r} has {model.info.n_classes} classes: choose the matching --dataset (or the right "
                           "checkpoint)")
    want = (model.info.in_channels, *model.info.image_size)
    if tuple(imageset.shape) != want:
        raise DatasetError(f"dataset {imageset.name!r} has images of shape {tuple(imageset.shape)} but checkpoint "
                           f"{name!r} takes {want}: choose the matching dataset")


def load_eval_set(model: HybridModel, name: Optional[str | ImageSet], split: str = "test", *, data_dir: Any = None,
                  download: bool = False, n: Optional[int] = None, need_labels: bool = True) -> ImageSet:
    """The evaluation set for ``model`` (its own dataset when ``name`` is None; an :class:`ImageSet` given
    directly is used as it is), cut to the first ``n`` and checked against the model."""
    from ..data.imageset import ImageSet
    from ..data.registry import get_dataset

    if isinstance(name, ImageSet):
        imageset = name.first(n)
    else:
        imageset = get_dataset(name or default_dataset(model), split, data_dir=data_dir, download=download).first(n)
    check_compatible(model, imageset, need_labels=need_labels)
    return imageset


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def finish(out_dir: Optional[str | Path], evaluations: list[Evaluation], *, device: Any, seed: int,
           config: dict[str, Any]) -> dict[str, Any]:
    """Write ``out_dir/results.json`` (when ``out_dir``) and return the document."""
    from ..results import results_document

    prov = provenance(device=device, seed=seed, config=config)
    if out_dir is not None:
        write_results(out_dir, evaluations, prov)
    return results_document(evaluations, prov)


def summary_table(evaluations: Iterable[Evaluation], metrics: Sequence[str]) -> str:
    """A plain-text table for the terminal: one row per evaluation, the named metrics as columns."""
    rows = [[e.checkpoint.get("name", "?")] + [_fmt(e.metrics.get(m)) for m in metrics] for e in evaluations]
    header = ["checkpoint", *metrics]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), *map(line, rows)])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
