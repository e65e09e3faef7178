"""Evaluators: each takes HybridModels and data and returns :class:`jembench.results.Evaluation` objects."""
