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
