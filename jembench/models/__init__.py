"""Models: the WRN trunk of JEM / JEM++, the HybridModel interface and checkpoint I/O."""

from .checkpoints import file_sha256, load, save_native
from .hybrid import HybridModel, ModelInfo, wrap
from .wrn import JEMNet, WideResNet

__all__ = ["HybridModel", "JEMNet", "ModelInfo", "WideResNet", "file_sha256", "load", "save_native", "wrap"]
