"""Defaults that are not an evaluator's option: run-level values, environment variables, caches, training.

Each evaluator's options (name, type, default, range, help) live in its settings class
(``jembench.evaluators.<name>``); the settings every evaluator shares in
:class:`jembench.evaluators.base.SharedSettings`, which reads the run-level values below.
"""

SEED = 0
DEVICE = "auto"  # CUDA when available, else CPU
BATCH_SIZE = 256
TEST_SIGMA = 0.0  # test-time input noise; the JEM / JEM++ scripts use 0.03 (preset "paper")
JEM_TEST_SIGMA = 0.03
DEFAULT_DATASET_JEM_FILES = "cifar10"  # JEM / JEM++ files record no dataset
REPORTS_DIR = "reports"
CKPT_ENV = "JEMBENCH_CKPT"
DATA_ENV = "JEMBENCH_DATA"
GEN_FIDELITY_CACHE = "~/.cache/jembench/fidelity"  # generation reference features, keyed by dataset + extractor
GEN_EXTRACTORS_ENV = "JEMBENCH_EXTRACTORS"  # directory of bundled extractor files (installs without checkpoints/)

# --- train: `jembench train` (issue 2; owner: samplers/trainer) -----------------------------------------
TRAIN = {  # JEM's CIFAR settings where they transfer; digits-scale where they do not (buffer, epochs)
    "dataset": "digits", "depth": 10, "width": 1, "norm": "none", "epochs": 10, "batch_size": 64,
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0,
    "decay_epochs": None, "decay_rate": 0.3,  # lr x 0.3 after each listed epoch (JEM: 160, 180)
    "px_weight": 1.0,  # 0 = the plain classifier baseline
    "sampler": "sgld", "sgld_steps": 20, "sgld_step_size": 1.0, "sgld_noise": 0.01, "grad_clamp": None,
    "clamp_x": False, "jempp_outer": 10, "jempp_inner": 5, "jempp_step_size": 0.2, "jempp_noise": 0.0,
    "buffer_size": 10000, "reinit_freq": 0.05, "init": "uniform",
    "sampler_init": "buffer",  # "buffer": persistent chains (PCD, JEM); "data": CD-k from the batch's images
    "labels_per_class": None, "train_sigma": 0.03, "energy_limit": 1e4, "seed": 0,
}
