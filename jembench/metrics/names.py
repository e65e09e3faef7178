"""Names of metrics that options offer as choices (no torch here, so ``--help`` can list them)."""

FIDELITY = ("is", "fid", "kid", "prc")  # generation metrics (torch-fidelity): IS, FID, KID, precision / recall
