"""Defaults shared by the Python API and the CLI (one place, so both always agree)."""

SEED = 0
DEVICE = "auto"  # CUDA when available, else CPU
BATCH_SIZE = 256
TEST_SIGMA = 0.0  # test-time input noise; the JEM / JEM++ scripts use 0.03 (preset "paper")
JEM_TEST_SIGMA = 0.03
DEFAULT_DATASET_JEM_FILES = "cifar10"  # JEM / JEM++ files record no dataset
REPORTS_DIR = "reports"
CKPT_ENV = "JEMBENCH_CKPT"
DATA_ENV = "JEMBENCH_DATA"

# --- ood: OOD detection evaluator (issue 4; owner: ood) -------------------------------------------------
OOD_PRESETS = {  # --out NAME expands to these OOD sets
    "jem": ("svhn", "cifar100", "celeba", "interp"),  # JEM paper, Table 2
    "digits": ("noise", "uniform", "constant", "interp", "rotated"),
    "synthetic": ("noise", "uniform", "constant", "interp"),
}
OOD_DEFAULT_PRESET = {"cifar10": "jem", "digits": "digits"}  # in-distribution -> preset when no --out; else synthetic
OOD_TEMPERATURE = 1.0  # energy-T score
OOD_BOOTSTRAP = 1000  # resamples of the AUROC confidence interval (0 = none)
OOD_CI_LEVEL = 0.95
