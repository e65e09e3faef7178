"""What an evaluator is: its settings, the settings every evaluator shares, and how the API runs one.

An :class:`Evaluator` is registered once (:mod:`jembench.evaluators.registry`) with its name, title, settings
class, the function that runs it, its headline metrics and its figures. The Python API function of an evaluator
(``jembench.clf`` ...) is :meth:`Evaluator.function`; the command (``jembench clf``) is generated from the same
object by :mod:`jembench.cli.evaluator_cmd`; run-all runs :attr:`Evaluator.run` on each checkpoint.

``run(models, settings, shared, ctx) -> list[Evaluation]``: the models are loaded and on the device, the
settings validated; ``ctx`` says where files go (paths in ``Evaluation.artifacts`` are relative to
``ctx.out_dir``) and holds the shared forward cache. It writes no results.json: the caller does, once.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from .. import background, defaults, distributed
from ..cost import Cost, total
from ..errors import JembenchError, PreflightError
from ..io import checkpoint_slugs
from ..models.norms import NORMS
from ..outdir import holds_out_dir
from ..progress import labelled
from ..results import Evaluation, EvaluatorResult
from ..runtime import PRECISIONS, precision_problem, resolve_device
from ..settings import Settings, Spelling, fits, option

if TYPE_CHECKING:  # models, data and the forward cache import torch: used when an evaluator runs, not when listed
    from ..forward import ForwardCache
    from ..models import HybridModel

Checkpoints = Union[str, Path, "HybridModel", Sequence[Union[str, Path, "HybridModel"]]]
IMAGESET = "jembench.data.imageset:ImageSet"


@dataclass(frozen=True)
class SharedSettings(Settings):
    """Settings every evaluator reads the same way; top-level in run-all (``--sigma``, not ``--set clf.sigma``).
    ``dataset``, ``n`` and ``sigma`` define the shared forward pass of accuracy, calibration and OOD."""

    dataset: Optional[str] = option(
        None, "Evaluation dataset (default: the checkpoint's own; JEM/JEM++ files: cifar10, or cifar100 for "
              "100-class files). See `jembench datasets`.", accepts=(IMAGESET,), metavar="NAME")
    n: Optional[int] = option(None, "Use only the first N images of each set (quick runs; default: all).", min=1)
    sigma: float = option(defaults.TEST_SIGMA, "Test-time Gaussian input noise (JEM's scripts use 0.03).", min=0,
                          unit="model space")
    seed: int = option(defaults.SEED, "Seed of every random draw (noise, splits, samplers, attacks); recorded.")
    device: str = option(defaults.DEVICE, "cpu, cuda, cuda:1, mps, or auto (CUDA when available).")
    batch_size: Optional[int] = option(
        None, f"Images per model call, or auto (default): on CUDA the largest batch that fits (halving on "
              f"out-of-memory, cached per model, device and precision), elsewhere {defaults.BATCH_SIZE}.", min=1,
        parse=lambda text: None if text.strip().lower() == "auto" else int(text), metavar="INT|auto", none="auto")
    precision: str = option("fp32", "Autocast precision of every model pass: fp32 (none), bf16 (CPU and CUDA), "
                                    "fp16 (CUDA only); recorded in every protocol.", choices=tuple(PRECISIONS))
    data_dir: Optional[str] = option(None, f"Dataset root (default ${defaults.DATA_ENV}, else "
                                           "~/.cache/jembench/data).", accepts=("os:PathLike",), metavar="DIR",
                                     path="dir")
    download: bool = option(False, "Allow downloading absent datasets (torchvision).")
    head: Optional[str] = option(None, "JEM files do not say: ccf = log p(x) from logits (default), f = energy "
                                       "head.", choices=("ccf", "f"))
    norm: Optional[str] = option(None, "Override the inferred normalisation; GroupNorm files share InstanceNorm's "
                                       "keys: pass --norm layer for them.", choices=NORMS)
    cache_dir: Optional[str] = option(None, "Persist forward passes (and generation reference features) here, "
                                            "keyed by content hashes, and reuse them.", accepts=("os:PathLike",),
                                      metavar="DIR", path="dir")
    batch_auto: bool = field(default=False, compare=False)  # not an option: batch_size was resolved from auto

    def check(self, spell: Spelling):
        try:
            resolve_device(self.device)
        except JembenchError as exc:
            yield f"{spell.assign('device', self.device)}: {exc}"
        except RuntimeError:
            yield f"{spell.assign('device', self.device)}: not a device; use cpu, cuda, cuda:N, mps or auto"
        else:
            problem = precision_problem(self.precision, resolve_device(self.device))
            if problem:
                yield f"{spell.assign('precision', self.precision)}: {problem}"

    def resolved(self, models: Sequence[HybridModel]) -> "SharedSettings":
        """These settings with ``batch_size`` auto resolved for ``models`` (the smallest of their answers, rows of
        one forward + input-gradient pass; ``batch_auto`` says so, for evaluators that stack rows per image)."""
        if self.batch_size is not None:
            return self
        from ..batch_size import resolve

        return dataclasses.replace(self, batch_size=min(resolve(None, m, self.cache_dir) for m in models),
                                   batch_auto=True)

    def overrides(self) -> dict[str, Any]:
        """Model overrides for :func:`jembench.load` (what a JEM file cannot say)."""
        return {k: v for k, v in (("head", self.head), ("norm", self.norm)) if v is not None}


@dataclass
class Context:
    """Where and how an evaluator runs: device, shared forward cache, output folder, progress bars."""

    device: Any
    cache: Optional[ForwardCache]  # the shared forward pass (None for evaluators that do not read it)
    out_dir: Optional[Path] = None
    save_raw: bool = False
    progress: bool = True
    label: str = ""  # what every progress bar of the run starts with (the step; jembench.progress.labelled)
    slugs: dict[int, str] = field(default_factory=dict)  # id(model) -> its unique file-name slug
    extras: dict[str, Any] = field(default_factory=dict)  # per-sample data the API result carries (not written)

    def name_files(self, models: Sequence[HybridModel]) -> None:
        """Give each model its unique file-name slug (:func:`jembench.io.checkpoint_slugs`)."""
        self.slugs.update(zip(map(id, models), checkpoint_slugs([m.info.name for m in models])))

    def slug(self, model: HybridModel) -> str:
        """The model's file-name slug (its name made safe and unique among the run's checkpoints)."""
        if id(model) not in self.slugs:
            self.name_files([model])
        return self.slugs[id(model)]


def record_precision(evaluations: list[Evaluation], precision: str) -> list[Evaluation]:
    """Write the autocast precision into every evaluation's protocol."""
    for e in evaluations:
        e.protocol.setdefault("precision", precision)
    return evaluations


def single_step(settings: Settings) -> list[tuple[str, Settings]]:
    return [("", settings)]


def no_cost(settings: Settings, shared: SharedSettings, model: HybridModel) -> list[Cost]:
    return []


def no_preflight(models: list[HybridModel], settings: Settings, shared: SharedSettings,
                 spell: Spelling) -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class Evaluator:
    """One evaluator, registered once; the API, the command, run-all and the report read it from here."""

    name: str  # command name and run-all's --set section
    title: str  # report section and table titles
    settings: type[Settings]
    run: Callable[..., list[Evaluation]]  # run(models, settings, shared, ctx)
    result: type[EvaluatorResult]  # what the API returns
    summary: Callable[[Any], str]  # the command's terminal output for a result
    shared: tuple[str, ...]  # the SharedSettings fields its command takes
    headline: tuple[str, ...]  # metric-name patterns (fnmatch) for the summary cards, in order of preference
    headline_last: bool  # a pattern picks its last match (robustness: the largest budget), else its first
    metrics: tuple[str, ...]  # patterns of every metric name it writes (a test checks outputs against them)
    figures: str  # title of its figures in the report
    help: str  # the command's --help text
    short_help: str = ""
    positional: tuple[str, ...] = ("dataset",)  # API arguments after the checkpoints, in order
    renames: Mapping[str, str] = field(default_factory=dict)  # shared field -> its option name on this command
    aliases: Mapping[str, str] = field(default_factory=dict)  # extra API keyword -> field (in_dataset -> dataset)
    uses_forward_cache: bool = False  # reads the shared forward pass (run-all gives it the run's cache)
    steps: Callable[[Settings], list[tuple[str, Settings]]] = single_step  # run-all steps: (variant, settings)
    # preflight(models, settings, shared, spell): every problem knowable before a model pass (jembench.preflight)
    preflight: Callable[..., Iterable[str]] = no_preflight
    # cost(settings, shared, model) -> [Cost]: its passes, counted from its settings (--plan and results.json)
    cost: Callable[..., list[Cost]] = no_cost

    def headline_metrics(self, metrics: Mapping[str, Any]) -> list[str]:
        """Up to two metric names for a summary card: the first present of each headline pattern."""
        present = [m for m, v in metrics.items() if v is not None]
        out: list[str] = []
        for pattern in self.headline:
            hits = [m for m in present if fnmatch.fnmatchcase(m, pattern) and m not in out]
            out += hits[-1:] if self.headline_last else hits[:1]
        return out[:2] or present[:1]

    def writes(self, metric: str) -> bool:
        """Whether ``metric`` is a name this evaluator writes."""
        return any(fnmatch.fnmatchcase(metric, p) for p in self.metrics)

    def spelling(self) -> Spelling:
        return Spelling(renames=self.renames)

    def parse(self, values: Mapping[str, Any], spell: Optional[Spelling] = None,
              problems: Optional[list[Any]] = None) -> tuple[Settings, SharedSettings]:
        """Split keyword values into this evaluator's settings and the shared ones, both validated. A former name
        of one of its fields that is now also a shared option (robust's ``norm``, now ``threat``; ``norm`` is the
        model override) goes to the field when the value fits it (``linf``), else to the shared option. Every
        problem is raised together; with a ``problems`` list they are appended to it and an invalid half is None."""
        spell = spell or self.spelling()
        own, shared, found = {}, {}, []  # found: one-line texts and errors
        for key, value in values.items():
            key = self.aliases.get(key, key)
            former = self.settings.renamed(key)
            if self.settings.field(key) is not None or (former is not None and (key not in self.shared
                                                                                 or fits(former, value))):
                own[key] = value  # Settings.build reads a former name with a deprecation warning
            elif key in self.shared:
                shared[key] = value
            else:
                allowed = [f.name for f in self.settings.fields()] + list(self.shared)
                found.append(f"{self.name}: unknown option {key!r}; options: {', '.join(allowed)}")
        built: list[Any] = []
        for cls, given in ((self.settings, own), (SharedSettings, shared)):
            try:
                built.append(cls.build(given, spell=spell))
            except JembenchError as exc:
                found.append(exc)
                built.append(None)
        if found and problems is None:
            raise PreflightError.of(found)
        if problems is not None:
            problems += found
        return built[0], built[1]

    def prepare(self, checkpoints: Checkpoints, values: Mapping[str, Any]
              ) -> tuple[list[HybridModel], Settings, SharedSettings]:
        """The preflight: settings parsed, checkpoints loaded, then this evaluator's :attr:`preflight` checks;
        every problem raised together as a :class:`PreflightError` before any model pass."""
        from .common import load_for_preflight

        problems: list[Any] = []  # one-line texts and errors
        settings, shared = self.parse(values, problems=problems)
        dataset = shared.dataset if shared is not None and isinstance(shared.dataset, str) else None
        models = load_for_preflight(checkpoints, shared, problems, dataset=dataset)
        if settings is not None and shared is not None and models:
            problems += self.preflight(models, settings, shared, self.spelling())
        if problems:
            raise PreflightError.of(problems)
        return models, settings, distributed.from_main(shared.resolved(models))  # auto batch: rank 0's

    @holds_out_dir
    def call(self, checkpoints: Checkpoints, *args: Any, out_dir: Any = None, save_raw: bool = False,
             cache: Optional[ForwardCache] = None, progress: bool = True, plan: bool = False,
             **values: Any) -> Any:
        """The Python API: check everything (:meth:`prepare`), run, write ``out_dir/results.json`` (holding
        ``out_dir``'s lock: :func:`jembench.outdir.claim`). With ``plan=True`` nothing is evaluated or written:
        the :class:`~jembench.evaluators.plan.Plan` is returned."""
        from ..forward import ForwardCache
        from .common import finish
        if len(args) > len(self.positional):
            raise JembenchError(f"{self.name}() takes {len(self.positional)} positional argument(s) after the "
                                f"checkpoints ({', '.join(self.positional)}); pass the rest by keyword")
        values.update(zip(self.positional, args))
        if save_raw and out_dir is None:
            raise JembenchError("save_raw needs out_dir: per-sample arrays are written there")
        models, settings, shared = self.prepare(checkpoints, values)
        if plan:
            from .plan import make_plan

            return make_plan([(self.name, self, settings, m) for m in models], shared)
        device = distributed.local_device(resolve_device(shared.device))
        if self.uses_forward_cache and cache is None:
            cache = ForwardCache(shared.cache_dir)
        main = distributed.is_main()  # under torchrun rank 0 alone writes files and shows progress
        ctx = Context(device, cache if self.uses_forward_cache else None,
                      Path(out_dir) if out_dir is not None and main else None, save_raw, progress and main,
                      label=self.name)
        ctx.name_files(models)
        with labelled(ctx.label):
            evaluations = record_precision(self.run(models, settings, shared, ctx), shared.precision)
        background.wait()  # figures are drawn while the models run; all on disk before results.json
        passes = {m.info.name: total(self.cost(settings, shared, m)) for m in models}
        for e in evaluations if self.cost is not no_cost else ():
            e.provenance.setdefault("passes", passes.get(e.checkpoint.get("name")))
        config = {"evaluator": self.name, "settings": settings.to_dict(), "shared": shared.to_dict()}
        doc = finish(ctx.out_dir, evaluations, device=device, seed=shared.seed, config=config)
        return self.result(evaluations, doc, **ctx.extras)

    def function(self) -> Callable[..., EvaluatorResult]:
        """The API function (``jembench.<name>``), its signature and defaults generated from the settings."""
        def api(checkpoints: Checkpoints, *args: Any, **kwargs: Any) -> EvaluatorResult:
            return self.call(checkpoints, *args, **kwargs)

        fields = {f.name: f for f in [*self.settings.fields(),
                                      *(g for g in SharedSettings.fields() if g.name in self.shared)]}
        params = [inspect.Parameter("checkpoints", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in self.positional
                                     else inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
                   for f in sorted(fields.values(), key=lambda f: (list(self.positional) + [f.name]).index(f.name))]
        params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d)
                   for k, d in (("out_dir", None), ("save_raw", False), ("cache", None), ("progress", True),
                                ("plan", False), ("wait", False))]
        api.__signature__ = inspect.Signature(params, return_annotation=self.result)  # type: ignore[attr-defined]
        api.__name__ = api.__qualname__ = self.name.replace("-", "_")
        api.__doc__ = (f"{self.short_help or self.title} (mirrors ``jembench {self.name}``).\n\n"
                       + "\n".join(f"``{f.name}``: {f.describe()}" for f in self.settings.fields()))
        return api


__all__ = ["Checkpoints", "Context", "Evaluator", "SharedSettings", "record_precision", "single_step"]
