"""SGLD samplers, replay buffers and chain initialisations shared by training, purification and generation."""

from .bn import preserve_bn_stats
from .buffer import ReplayBuffer
from .init import GaussianInit, UniformInit
from .trace import ChainTrace, TraceRecorder
from .sgld import JEMPPConfig, SGLDConfig, jempp_sample, model_log_density, run_sampler, sgld_sample

__all__ = ["ChainTrace", "GaussianInit", "JEMPPConfig", "ReplayBuffer", "SGLDConfig", "UniformInit", "jempp_sample",
           "model_log_density", "preserve_bn_stats", "run_sampler", "sgld_sample", "TraceRecorder"]
