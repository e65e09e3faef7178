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

# --- gen: generation evaluator (issue 6; owner: generation) -------------------------------------------
GEN_N = 1000  # samples per protocol for fresh chains (FID is biased in N: compare equal N only)
GEN_PROTOCOLS = ("sgld",)  # presets run by `jembench gen` when none is named
GEN_METRICS = ("is", "fid", "kid", "prc")
GEN_REFERENCE_SPLIT = "train"  # JEM++ used "train+test"
GEN_FEATURE_EXTRACTOR = "auto"  # the dataset's bundled reference classifier, else torch-fidelity's Inception
GEN_SGLD_STEPS = 40  # JEM README: 40 SGLD steps per draw for fresh samples
GEN_PCD_ROUNDS = 100  # batches drawn from, advanced and written back to the buffer (JEM uncond_samples)
GEN_PCD_BATCH = 64
GEN_REINIT_FREQ = 0.05  # JEM: 5% of each draw restarts from the init
GEN_BUFFER_TOP = 0.1  # SADA-JEM: IS on the 10% most confident buffer samples per class (FID on 90%)
GEN_ISC_SPLITS = 10
GEN_KID_SUBSETS = 100
GEN_KID_SUBSET_SIZE = 1000  # capped at the smaller set's size (recorded)
GEN_PRC_NEIGHBORHOOD = 3
GEN_GRID_MAX = 100  # images in a sample grid
GEN_FIDELITY_CACHE = "~/.cache/jembench/fidelity"  # reference features, keyed by dataset + extractor content
GEN_EXTRACTORS_ENV = "JEMBENCH_EXTRACTORS"  # directory of bundled extractor files (installs without checkpoints/)

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

# --- clf / calib evaluators and the forward pass (issue 3; owner: clf/calib) ----------------------------
CLF_SPLIT = "test"
CALIB_BINS = 15  # equal-width ECE bins (Guo et al. 2017); JEM++ reports 20 (--bins 20)
CALIB_BOOTSTRAP = 1000  # percentile-bootstrap resamples for calibration intervals (0 = none)
CLF_INTERVAL_LEVEL = 0.95  # Wilson interval for accuracy, bootstrap intervals for calibration
CALIB_TS_FIT_FRACTION = 0.5  # seeded share of the evaluation set that fits the reference temperature
REFINE_STEPS = 0  # JEM-K: SGLD steps on test inputs before classifying (JEM's test_clf --n_steps)
REFINE_STEP_SIZE = 1.0  # JEM's test_clf step size
REFINE_NOISE = 0.01  # JEM's test_clf noise

# --- train: `jembench train` (issue 2; owner: samplers/trainer) -----------------------------------------
TRAIN = {  # JEM's CIFAR settings where they transfer; digits-scale where they do not (buffer, epochs)
    "dataset": "digits", "depth": 10, "width": 1, "norm": "none", "epochs": 10, "batch_size": 64,
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0,
    "decay_epochs": None, "decay_rate": 0.3,  # lr x 0.3 after each listed epoch (JEM: 160, 180)
    "px_weight": 1.0,  # 0 = the plain classifier baseline
    "sampler": "sgld", "sgld_steps": 20, "sgld_step_size": 1.0, "sgld_noise": 0.01, "grad_clamp": None,
    "clamp_x": False, "jempp_outer": 10, "jempp_inner": 5, "jempp_step_size": 0.2, "jempp_noise": 0.0,
    "buffer_size": 10000, "reinit_freq": 0.05, "init": "uniform",
    "labels_per_class": None, "train_sigma": 0.03, "energy_limit": 1e4, "seed": 0,
}

# --- robust: adversarial robustness evaluator (issue 5; owner: robust) ----------------------------------
ROBUST_NORM = "linf"
ROBUST_EPS = {"linf": "0,2/255,4/255,8/255,16/255", "l2": "0,0.25,0.5,1.0"}  # pixel units in [0, 1]
ROBUST_N = 300  # test images (JEM evaluated about 300)
ROBUST_ATTACKS = ("pgd",)  # also "apgd-ce", "apgd-dlr" (torchattacks)
ROBUST_STEPS = 40  # JEM: 40 PGD iterations; Hill et al. 2021: 50
ROBUST_LINF_STEP = 2 / 255  # widened to 2.5 * eps / steps when that is larger (Madry et al. 2018)
ROBUST_L2_REL_STEP = 2.5  # L2 step = 2.5 * eps / steps
ROBUST_RESTARTS = 1
ROBUST_PURIFY_STEPS = (0,)  # JEM-K settings; K = 0 (undefended) is always added
ROBUST_PURIFY_STEP_SIZE = 1.0  # JEM-K (Grathwohl et al. 2020): SGLD step 1, noise 0.01, in model space
ROBUST_PURIFY_NOISE = 0.01
ROBUST_PURIFY_COPIES = 5  # noisy copies whose logits are averaged
ROBUST_PURIFY_SIGMA = 0.03  # start noise of each copy, model space
ROBUST_EOT = 5  # purifications per attack gradient (Hill et al. 2021 use 15)
ROBUST_EVAL_PURIFICATIONS = 10  # fresh purifications averaged to decide a break (Hill et al. 2021 use 150)
ROBUST_FULL_GRAD_MAX_K = 2  # full gradients through the SGLD chain for K <= this
ROBUST_PROBE_N = 16  # images of the large-eps probe (accuracy must fall to about 0)
ROBUST_PROBE_EPS = {"linf": 0.5, "l2": 0.5}  # l2: times sqrt(C * H * W), i.e. the corner of the 0.5 L-inf ball
ROBUST_PROBE_MAX_ACC = 0.1  # probe accuracy above this raises a warning (gradient masking or a broken attack)
