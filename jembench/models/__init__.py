"""Models: the WRN trunk of JEM / JEM++, the HybridModel interface and checkpoint I/O (imported on first use:
``jembench.models.norms`` and the option lists that read it need no torch)."""

from ..lazy import lazy_exports

_WHERE = {**dict.fromkeys(("atomic_torch_save", "file_sha256", "inspect_checkpoint", "load", "read_checkpoint",
                           "save_native"), ".checkpoints"),
          **dict.fromkeys(("HybridModel", "ModelInfo", "describe", "wrap"), ".hybrid"),
          **dict.fromkeys(("JEMNet", "WideResNet"), ".wrn")}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
