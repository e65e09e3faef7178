"""The normalisation layers a WRN trunk can have, by name (no torch here: option choices list them)."""

NORMS = ("none", "batch", "instance", "layer", "act")
