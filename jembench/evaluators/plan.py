"""``--plan``: what a run will cost, without running it: one row per step and checkpoint (images, forward and
backward passes per image and in total, SGLD and attack steps, feature-extractor passes) and the wall time
estimated from a short throughput probe of each model on the run's device and batch size.

The passes come from each evaluator's ``cost`` function (:mod:`jembench.cost`), the one the results record. A
shared forward pass (accuracy, calibration and the in-distribution OOD pass read the same one) is paid by the
first step that reads it. Feature-extractor passes are counted but not timed (another network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

from ..cost import Cost, Throughput, probe, total
from ..models import HybridModel
from ..settings import Settings
from .base import Evaluator, SharedSettings, no_cost

COLUMNS = ("step", "checkpoint", "images", "fwd/img", "bwd/img", "forward", "backward", "SGLD steps",
           "attack steps", "extractor", "est. time")


@dataclass
class Plan:
    """Rows (one per step and checkpoint, each with its parts), the total, and the probes the times come from."""

    rows: list[dict[str, Any]]
    total: dict[str, Any]
    probes: dict[str, dict[str, Any]]
    batch_size: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "total": self.total, "probes": self.probes, "batch_size": self.batch_size,
                "notes": self.notes}

    def table(self) -> str:
        """The terminal table: a row per step, then the total, the probes and how to read it."""
        lines = [[r["step"], r["checkpoint"], _n(r["images"]), _per(r["forward_per_image"]),
                  _per(r["backward_per_image"]), _n(r["forward"]), _n(r["backward"]), _n(r["sampler_steps"]),
                  _n(r["attack_steps"]), _n(r["extractor"]), _duration(r["seconds"])] for r in self.rows]
        t = self.total
        lines.append(["total", "", "", "", "", _n(t["forward"]), _n(t["backward"]), _n(t["sampler_steps"]),
                      _n(t["attack_steps"]), _n(t["extractor"]), _duration(t["seconds"])])
        widths = [max(len(str(x[i])) for x in [COLUMNS, *lines]) for i in range(len(COLUMNS))]
        out = ["  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w) for i, (c, w) in enumerate(zip(x, widths)))
               .rstrip() for x in [COLUMNS, *lines]]
        for name, p in self.probes.items():
            out.append(f"probe {name} on {p['device']} (batch {p['batch']}, {p['precision']}): forward "
                       f"{_per(p['forward_s'] * 1e3)} ms/img, forward+backward {_per(p['forward_backward_s'] * 1e3)} "
                       "ms/img")
        return "\n".join(out + self.notes)


def make_plan(steps: Sequence[tuple[str, Evaluator, Settings, HybridModel]], shared: SharedSettings,
              done: Collection[int] = ()) -> Plan:
    """The plan of ``(step name, evaluator, settings, model)`` steps, in order; the steps numbered in ``done``
    were finished by an earlier run (run-all resumes them) and cost nothing."""
    probes: dict[int, Throughput] = {}
    paid: set[tuple[int, str]] = set()
    rows = []
    undeclared = sorted({spec.name for _, spec, _, _ in steps if spec.cost is no_cost})
    for i, (name, spec, settings, model) in enumerate(steps):
        if id(model) not in probes:
            probes[id(model)] = probe(model, shared.batch_size)
        costs = spec.cost(settings, shared, model)
        if i in done:  # its shared passes are not in memory for the steps after it
            name, costs = f"{name} (done, resumed)", [Cost(c.part, c.images, 0) for c in costs]
        costs = [_unless_paid(c, id(model), paid) for c in costs]
        t = total(costs)
        seconds = probes[id(model)].seconds(t["forward"], t["backward"])
        rows.append({"step": name, "checkpoint": model.info.name, **t, "seconds": seconds})
    keys = ("forward", "backward", "sampler_steps", "attack_steps", "extractor", "seconds")
    summed = {k: sum(r[k] for r in rows) for k in keys}
    models = {id(m): m for *_, m in steps}
    notes = ["passes: images through the network (SGLD step / attack gradient = 1 forward + 1 backward); per image = "
             "total / the step's evaluation set (OOD: the in-distribution set); a shared forward pass is paid by "
             "its first step (0 afterwards).",
             "est. time: the probe's seconds per image x passes, model passes only: data loading, metrics, figures "
             "and feature-extractor passes (column 'extractor') are not in it."]
    notes += [f"{', '.join(undeclared)}: passes not declared by the evaluator yet (shown as 0)"] if undeclared else []
    return Plan(rows, summed, {models[i].info.name: {**vars(p), "precision": getattr(models[i], "precision", "fp32")}
                               for i, p in probes.items()}, shared.batch_size, notes)


def _unless_paid(c: Cost, model: int, paid: set[tuple[int, str]]) -> Cost:
    """``c``, or a free copy when its shared pass was already paid by an earlier step on the same model."""
    if c.shared is None:
        return c
    if (model, c.shared) in paid:
        return Cost(c.part + " (shared, already computed)", c.images, 0, 0, extractor=0, shared=c.shared)
    paid.add((model, c.shared))
    return c


def _n(v: float) -> str:
    return f"{v:,.0f}" if v else "0"


def _per(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
