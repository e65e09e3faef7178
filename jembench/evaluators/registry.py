"""The evaluator registry: every evaluator once, in run-all and report order.

The CLI group (one command per entry), run-all (steps, resume keys, the shared forward cache, ``--only`` /
``--skip``, ``--set`` sections), the presets and the report (titles, summary cards, figure sections) all read
it. Adding an evaluator is one module defining ``EVALUATOR`` (:class:`~jembench.evaluators.base.Evaluator`)
and its line below.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from ..errors import JembenchError
from ..results import Evaluation
from . import calib, clf, density, gen, ood, robust
from .base import Evaluator


class Registry(Mapping[str, Evaluator]):
    """Evaluators by name, in order; also what the report asks of them (title, rank, headline metrics)."""

    def __init__(self, evaluators: list[Evaluator]):
        self._by_name = {e.name: e for e in evaluators}

    def __getitem__(self, name: str) -> Evaluator:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def get_evaluator(self, name: str) -> Evaluator:
        if name not in self._by_name:
            raise JembenchError(f"unknown evaluator {name!r}; choose from {', '.join(self)}")
        return self._by_name[name]

    # --- what the report reads (jembench.reporting.Catalog) -------------------------------------------------
    def title(self, name: str) -> str:
        return self._by_name[name].title if name in self._by_name else name

    def figures_title(self, name: str) -> str:
        return self._by_name[name].figures if name in self._by_name else name

    def rank(self, name: str) -> int:
        return list(self._by_name).index(name) if name in self._by_name else len(self._by_name)

    def headline(self, ev: Evaluation) -> list[str]:
        if ev.evaluator in self._by_name:
            return self._by_name[ev.evaluator].headline_metrics(ev.metrics)
        return [m for m, v in ev.metrics.items() if v is not None][:1]


REGISTRY = Registry([
    clf.EVALUATOR,
    calib.EVALUATOR,
    ood.EVALUATOR,
    robust.EVALUATOR,
    gen.EVALUATOR,
    density.EVALUATOR,
])
EVALUATORS = tuple(REGISTRY)
