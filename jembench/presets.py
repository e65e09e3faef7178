"""Presets of ``jembench run-all``: typed configurations of every evaluator.

``quick``: the README's main job, the bundled digits demo checkpoints in a few minutes on 2 CPU cores (small N,
few eps values, few sampling steps: numbers for a first look, not for a paper).
``paper``: the JEM protocol (REFERENCE.md): test noise sigma 0.03, the JEM OOD suite (the evaluator's preset for
the in-distribution set), PGD with 40 iterations on 300 images in L-inf and L2 with JEM-0/1/10 purification,
10k-sample generation (JEM's uncond_samples: PCD into a 10k buffer, 40 SGLD steps per draw, 1000 draws).

Every field can be overridden: ``get_preset("quick").override({"robust.eps": "0,8/255", "sigma": 0.03})``
(the CLI's ``--set FIELD=VALUE``); fields of the shared forward pass (``dataset``, ``n``, ``sigma``) are
top-level because accuracy, calibration and logit OOD scores read the same pass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import defaults
from .errors import JembenchError

EVALUATORS = ("clf", "calib", "ood", "robust", "gen")


@dataclass
class CalibSettings:
    bins: int = defaults.CALIB_BINS
    bootstrap: int = defaults.CALIB_BOOTSTRAP


@dataclass
class OODSettings:
    out: tuple[str, ...] = ()  # OOD sets or presets; () = the evaluator's preset for the in-distribution set
    scores: tuple[str, ...] = ()  # () = every score
    bootstrap: int = defaults.OOD_BOOTSTRAP


@dataclass
class RobustSettings:
    norms: tuple[str, ...] = (defaults.ROBUST_NORM,)
    eps_linf: tuple[float, ...] = (0.0, 2 / 255, 8 / 255)  # pixel units in [0, 1]
    eps_l2: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    n: int = defaults.ROBUST_N
    attacks: tuple[str, ...] = defaults.ROBUST_ATTACKS
    steps: int = defaults.ROBUST_STEPS
    restarts: int = defaults.ROBUST_RESTARTS
    purify_steps: tuple[int, ...] = defaults.ROBUST_PURIFY_STEPS
    eot: int = defaults.ROBUST_EOT
    eval_purifications: int = defaults.ROBUST_EVAL_PURIFICATIONS
    purify_copies: int = defaults.ROBUST_PURIFY_COPIES
    full_grad_max_k: int = defaults.ROBUST_FULL_GRAD_MAX_K


@dataclass
class GenSettings:
    n: int = defaults.GEN_N  # samples per protocol (FID is biased in N: compare equal N only)
    protocols: tuple[str, ...] = defaults.GEN_PROTOCOLS  # jembench.generation.PRESETS names
    steps: Optional[int] = None  # sampler steps per draw (None: the protocol's own)
    pcd_rounds: Optional[int] = None  # PCD rounds of "pcd" protocols (None: the protocol's own)
    metrics: tuple[str, ...] = defaults.GEN_METRICS
    reference: str = defaults.GEN_REFERENCE_SPLIT
    feature_extractor: str = defaults.GEN_FEATURE_EXTRACTOR
    fid_weights: Optional[str] = None  # local Inception weights file (offline clusters)
    offline: bool = False  # never download Inception weights: fail at once naming the file to provide


@dataclass
class Preset:
    name: str
    description: str
    evaluators: tuple[str, ...] = EVALUATORS
    dataset: Optional[str] = None  # None: each checkpoint's own dataset
    n: Optional[int] = None  # evaluation images for accuracy, calibration and OOD (None: the whole test split)
    sigma: float = defaults.TEST_SIGMA  # test-time input noise (model space)
    calib: CalibSettings = field(default_factory=CalibSettings)
    ood: OODSettings = field(default_factory=OODSettings)
    robust: RobustSettings = field(default_factory=RobustSettings)
    gen: GenSettings = field(default_factory=GenSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def override(self, assignments: Mapping[str, Any]) -> "Preset":
        """A copy with ``{"field" or "section.field": value}`` set; strings are parsed by the field's type."""
        new = dataclasses.replace(self, calib=dataclasses.replace(self.calib), ood=dataclasses.replace(self.ood),
                                  robust=dataclasses.replace(self.robust), gen=dataclasses.replace(self.gen))
        for name, value in assignments.items():
            target, attr = new, name
            if "." in name:
                section, attr = name.split(".", 1)
                target = getattr(new, section, None)
                if not dataclasses.is_dataclass(target):
                    raise JembenchError(f"unknown preset section {section!r} in {name!r}; sections: "
                                        f"{', '.join(f.name for f in _sections())}")
            hints = typing.get_type_hints(type(target))
            if attr not in hints or dataclasses.is_dataclass(getattr(target, attr, None)):
                raise JembenchError(f"unknown preset field {name!r}; fields: {', '.join(field_names())}")
            setattr(target, attr, _coerce(value, hints[attr], name))
        bad = set(new.evaluators) - set(EVALUATORS)
        if bad:
            raise JembenchError(f"unknown evaluator(s) {', '.join(sorted(bad))}; choose from {', '.join(EVALUATORS)}")
        return new


def quick() -> Preset:
    """Small N, few eps values and sampling steps: the demo in minutes on 2 CPU cores."""
    return Preset(
        name="quick", description="first look: small N, few eps values, short sampling (not for publication)",
        n=None, sigma=0.0,
        calib=CalibSettings(bootstrap=200),
        ood=OODSettings(bootstrap=200),
        robust=RobustSettings(norms=("linf",), eps_linf=(0.0, 2 / 255, 8 / 255), n=64, steps=10,
                              purify_steps=(0, 1), eot=2, eval_purifications=2, purify_copies=2, full_grad_max_k=0),
        gen=GenSettings(n=500, protocols=("sgld",), steps=20),
    )


def paper() -> Preset:
    """The JEM protocol (REFERENCE.md section 2): sigma 0.03, JEM OOD suite, PGD-40 on 300 images, 10k samples."""
    return Preset(
        name="paper", description="JEM protocol: test noise 0.03, JEM OOD suite, PGD-40 L-inf and L2 on 300 images "
                                  "with JEM-0/1/10, 10k generated samples",
        n=None, sigma=defaults.JEM_TEST_SIGMA,
        calib=CalibSettings(bins=defaults.CALIB_BINS, bootstrap=defaults.CALIB_BOOTSTRAP),
        ood=OODSettings(bootstrap=defaults.OOD_BOOTSTRAP),
        robust=RobustSettings(norms=("linf", "l2"), eps_linf=(0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 24 / 255),
                              eps_l2=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0), n=300, steps=40,
                              purify_steps=(0, 1, 10), eot=defaults.ROBUST_EOT,
                              eval_purifications=defaults.ROBUST_EVAL_PURIFICATIONS),
        gen=GenSettings(n=10000, protocols=("pcd",), steps=defaults.GEN_SGLD_STEPS, pcd_rounds=1000),
    )


PRESETS = {"quick": quick, "paper": paper}


def get_preset(name: str | Preset) -> Preset:
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise JembenchError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def field_names() -> list[str]:
    """Every overridable field, as ``--set`` spells it."""
    out = []
    for f in dataclasses.fields(Preset):
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if dataclasses.is_dataclass(sub):
            out += [f"{f.name}.{g.name}" for g in dataclasses.fields(sub)]
        elif f.name not in ("name", "description"):
            out.append(f.name)
    return out


def _sections() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Preset) if f.default_factory is not dataclasses.MISSING]  # type: ignore


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Parse ``value`` (often a CLI string) as ``hint``: int, float, str, bool, Optional[...], tuple[X, ...]."""
    from .cli.options import parse_list

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "all")):
            return None
        return _coerce(value, inner, name)
    if origin is tuple:
        kind = args[0]
        items = parse_list(value, float if kind is float else str, name) if isinstance(value, str) else list(value)
        return tuple(_coerce(v, kind, name) for v in items)
    try:
        if hint is bool:
            return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
        if hint is int:
            return int(value)
        if hint is float:
            return parse_list(value, float, name)[0] if isinstance(value, str) else float(value)
        return str(value)
    except (TypeError, ValueError):
        raise JembenchError(f"cannot read {name}={value!r} as {getattr(hint, '__name__', hint)}") from None
