"""Functional metrics: pure functions on tensors, shared by the evaluators (thin wrappers around them).

Imported on first use, so option lists that read :mod:`.names` need no torch."""

from ..lazy import lazy_exports

_WHERE = {**dict.fromkeys(("adaptive_ece", "bin_index", "bootstrap_calibration_errors", "bootstrap_ci",
                           "calibration_errors", "classwise_ece", "ece", "fit_temperature", "mce", "reliability_bins",
                           "rms_ce"), ".calibration"),
          **dict.fromkeys(("accuracy_wilson", "brier", "confusion_matrix", "nll", "per_class_accuracy",
                           "wilson_interval"), ".classification")}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
