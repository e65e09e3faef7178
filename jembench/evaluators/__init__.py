"""Evaluators: one module per evaluator (its settings class, its ``run`` and its ``EVALUATOR`` entry), the
registry that lists them once (:mod:`.registry`), what they share (:mod:`.base`), run-all and the report API.
Each ``run`` takes loaded HybridModels and returns :class:`jembench.results.Evaluation` objects."""
