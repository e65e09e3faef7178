"""Presets of ``jembench run-all``: one instance of every evaluator's settings class, plus the shared forward pass.

``quick``: the README's main job, the bundled digits demo checkpoints in a few minutes on 2 CPU cores (small N,
few eps values, few sampling steps: numbers for a first look, not for a paper).
``paper``: the JEM protocol (REFERENCE.md): test noise sigma 0.03, the JEM OOD suite (the evaluator's preset for
the in-distribution set), PGD with 40 iterations on 300 images in L-inf and L2 with JEM-0/1/10 purification,
10k-sample generation (JEM's uncond_samples: PCD into a 10k buffer, 40 SGLD steps per draw, 1000 draws), an AIS
log Z bracket with 100 chains each way over 10,000 distributions.

Every field can be overridden: ``get_preset("quick").override({"robust.eps_linf": "0,8/255", "sigma": 0.03})``
(the CLI's ``--set FIELD=VALUE``). A section is an evaluator's name and its fields are the options of its command,
dashes as underscores; ``dataset``, ``n`` and ``sigma`` are top-level because accuracy, calibration and logit OOD
scores read the same pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import defaults
from .errors import JembenchError
from .evaluators.base import SharedSettings
from .evaluators.calib import CalibSettings
from .evaluators.density import DensitySettings
from .evaluators.gen import GenSettings
from .evaluators.ood import OODSettings
from .evaluators.registry import EVALUATORS, REGISTRY
from .evaluators.robust import RobustSettings
from .settings import SettingError, Settings, Spelling, parse_list

TOP_LEVEL = ("dataset", "n", "sigma")  # SharedSettings fields a preset sets


@dataclass(frozen=True)
class Preset:
    """Settings of a whole run: which evaluators, the shared forward pass, one settings instance per evaluator
    (``preset.robust``, ``preset.settings("robust")``; absent sections hold the evaluator's defaults)."""

    name: str
    description: str
    evaluators: tuple[str, ...] = EVALUATORS
    dataset: Optional[str] = None  # None: each checkpoint's own dataset
    n: Optional[int] = None  # evaluation images for accuracy, calibration and OOD (None: the whole test split)
    sigma: float = defaults.TEST_SIGMA  # test-time input noise (model space)
    sections: Mapping[str, Settings] = field(default_factory=dict)

    def settings(self, evaluator: str) -> Settings:
        """The settings of ``evaluator`` in this preset."""
        spec = REGISTRY.get_evaluator(evaluator)
        return self.sections.get(evaluator) or spec.settings()

    def __getattr__(self, name: str) -> Settings:  # preset.robust, preset.gen, ...
        if name in REGISTRY:
            return self.settings(name)
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "evaluators": list(self.evaluators),
                **{k: getattr(self, k) for k in TOP_LEVEL},
                **{name: self.settings(name).to_dict() for name in REGISTRY}}

    def override(self, assignments: Mapping[str, Any], problems: Optional[list[str]] = None) -> "Preset":
        """A copy with ``{"field" or "evaluator.field": value}`` set; text is parsed by the field's type and every
        value validated (errors name ``--set FIELD=VALUE``). The original is untouched. Every problem is found:
        they are raised together, or, with a ``problems`` list, appended to it (a section with a problem keeps
        its preset values)."""
        unknown = f"unknown preset field; fields: {', '.join(field_names())}"
        found: list[str] = []
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in assignments.items():
            section, _, name = key.rpartition(".")
            if section:
                if section not in REGISTRY or not (REGISTRY[section].settings.field(name)
                                                   or REGISTRY[section].settings.renamed(name)):
                    found.append(f"--set {key}={value}: {unknown}")
                else:
                    sections.setdefault(section, {})[name] = value
            elif key == "evaluators":
                try:
                    top[key] = evaluator_names(value)
                except JembenchError as exc:
                    found.append(str(exc))
            elif key in TOP_LEVEL:
                top[key] = value
            else:
                found.append(f"--set {key}={value}: {unknown}")
        shared = {k: top.pop(k) for k in TOP_LEVEL if k in top}
        if shared:
            base = SharedSettings(**{k: getattr(self, k) for k in TOP_LEVEL})
            try:
                parsed = SharedSettings.build(shared, spell=Spelling(""), base=base)
                top.update({k: getattr(parsed, k) for k in shared})
            except JembenchError as exc:
                found += exc.lines()
        new = dict(self.sections)
        for section, values in sections.items():
            cls, spell, base = REGISTRY[section].settings, Spelling(section), self.settings(section)
            try:
                new[section] = cls.build(values, spell=spell, base=base)
            except JembenchError as exc:
                found += exc.lines()
                kept: dict[str, Any] = {}  # the section keeps the values that are valid (for the other checks)
                for key, value in values.items():
                    try:
                        new[section] = cls.build({**kept, key: value}, spell=spell, base=base)
                        kept[key] = value
                    except JembenchError:
                        pass
        if found and problems is None:
            raise SettingError("\n".join(found))
        if problems is not None:
            problems += found
        return dataclasses.replace(self, sections=new, **top)

    def validate(self) -> None:
        """Check every section's values (a preset written in code is checked like a --set)."""
        for name in REGISTRY:
            self.settings(name).validate(Spelling(name))


def evaluator_names(value: Any, option: str = "evaluators", spell: Spelling = Spelling("")) -> tuple[str, ...]:
    """Evaluator names (a comma list or a sequence), checked against the registry, in run order; one-line error
    naming the option as ``spell`` writes it (``--set evaluators=...``; run-all's ``--only`` / ``--skip``)."""
    names = parse_list(value, str, "evaluator") if isinstance(value, str) else list(value)
    bad = [n for n in names if n not in REGISTRY]
    if bad:
        raise JembenchError(f"{spell.assign(option, names)}: unknown evaluator(s) {', '.join(bad)}; choose from "
                            f"{', '.join(REGISTRY)}")
    return tuple(n for n in REGISTRY if n in names)


def quick() -> Preset:
    """Small N, few eps values and sampling steps: the demo in minutes on 2 CPU cores."""
    return Preset(
        name="quick", description="first look: small N, few eps values, short sampling (not for publication)",
        n=None, sigma=0.0, sections={
            "calib": CalibSettings(bootstrap=200),
            "ood": OODSettings(bootstrap=200),
            "robust": RobustSettings(threat=("linf",), eps_linf=(0.0, 2 / 255, 8 / 255), n=64, steps=10,
                                     purify_steps=(0, 1), eot=2, eval_purifications=2, purify_copies=2,
                                     full_grad_max_k=0),
            "gen": GenSettings(n=500, protocol=("sgld",), steps=20, ladder=(1, 3)),
            "density": DensitySettings(n=100, chains=16, distributions=100, reverse_chains=16, dsm_sigmas=(0.1,)),
        })


def paper() -> Preset:
    """The JEM protocol (REFERENCE.md section 2): sigma 0.03, JEM OOD suite, PGD-40 on 300 images, 10k samples."""
    return Preset(
        name="paper", description="JEM protocol: test noise 0.03, JEM OOD suite, PGD-40 L-inf and L2 on 300 images "
                                  "with JEM-0/1/10, 10k generated samples",
        n=None, sigma=defaults.JEM_TEST_SIGMA, sections={
            "calib": CalibSettings(bins=15, bootstrap=1000),
            "ood": OODSettings(bootstrap=1000),
            "robust": RobustSettings(threat=("linf", "l2"),
                                     eps_linf=(0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 24 / 255),
                                     eps_l2=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0), n=300, steps=40,
                                     purify_steps=(0, 1, 10), eot=5, eval_purifications=10),
            "gen": GenSettings(n=10000, protocol=("pcd",), steps=40, pcd_rounds=1000, ladder=(1, 10, 100)),
            "density": DensitySettings(chains=100, distributions=10000, reverse_chains=100,
                                       dsm_sigmas=(0.01, 0.05, 0.1), ssm_projections=1),
        })


PRESETS = {"quick": quick, "paper": paper}


def get_preset(name: str | Preset) -> Preset:
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise JembenchError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def field_names() -> list[str]:
    """Every overridable field, as ``--set`` spells it."""
    return ["evaluators", *TOP_LEVEL,
            *(f"{name}.{f.name}" for name, spec in REGISTRY.items() for f in spec.settings.fields())]


__all__ = ["EVALUATORS", "PRESETS", "Preset", "evaluator_names", "field_names", "get_preset", "paper", "quick"]
