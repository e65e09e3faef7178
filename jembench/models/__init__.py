"""Models: the WRN trunk of JEM / JEM++, the HybridModel interface and checkpoint I/O."""

from .checkpoints import atomic_torch_save, file_sha256, inspect_checkpoint, load, read_checkpoint, save_native
from .hybrid import HybridModel, ModelInfo, describe, wrap
from .wrn import JEMNet, WideResNet

__all__ = ["HybridModel", "JEMNet", "ModelInfo", "WideResNet", "atomic_torch_save", "describe", "file_sha256",
           "inspect_checkpoint", "load", "read_checkpoint", "save_native", "wrap"]
