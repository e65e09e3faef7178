"""Functional metrics: pure functions on tensors, shared by the evaluators (thin wrappers around them)."""

from .calibration import (adaptive_ece, bin_index, bootstrap_calibration_errors, bootstrap_ci, calibration_errors,
                          classwise_ece, ece, fit_temperature, mce, reliability_bins, rms_ce)
from .classification import accuracy_wilson, brier, confusion_matrix, nll, per_class_accuracy, wilson_interval

__all__ = ["accuracy_wilson", "adaptive_ece", "bin_index", "bootstrap_calibration_errors", "bootstrap_ci", "brier",
           "calibration_errors", "classwise_ece", "confusion_matrix", "ece", "fit_temperature", "mce", "nll",
           "per_class_accuracy", "reliability_bins", "rms_ce", "wilson_interval"]
