"""Reading JEM, JEM++ and jembench checkpoint files; writing the native format.

Formats (see checkpoints/README.md):
- JEM / JEM++: ``{"model_state_dict": sd, "replay_buffer": buf}`` or a bare state dict ``sd``.
  The architecture is inferred from the keys (REFERENCE.md section 1). JEM++'s "yopo" trunk registers
  ``f.layer_one`` and ``f.other_layers.{0..3}`` as aliases of ``f.conv1``, ``f.layer1..3``, ``f.bn1``:
  they are dropped, as is JEM's unused ``f.linear``.
- jembench native: ``{"format": "jembench", ...}`` records the architecture, input normalisation,
  dataset and training configuration, so nothing is guessed.
Every file is read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import CheckpointError
from .hybrid import HybridModel, ModelInfo
from .wrn import NORMS, JEMNet

NATIVE_FORMAT = "jembench"
NATIVE_FORMAT_VERSION = 1
_YOPO_ALIASES = {"f.layer_one.": "f.conv1.", "f.other_layers.0.": "f.layer1.", "f.other_layers.1.": "f.layer2.",
                 "f.other_layers.2.": "f.layer3.", "f.other_layers.3.": "f.bn1."}


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(path: Path) -> Any:
    """torch.load with weights_only=True, every failure turned into one line."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path, or set $JEMBENCH_CKPT)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory: {path} (give the .pt file inside it)")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path} (download it again)")
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"{")):
        kind = "JSON" if text.startswith(b"{") else "an HTML/XML page"
        raise CheckpointError(f"{path} is {kind}, not a torch checkpoint (a download link saved the web page? "
                              "fetch the raw file)")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise CheckpointError(f"{path} is corrupt (bad CRC in {bad}); download it again")
        except zipfile.BadZipFile:
            raise CheckpointError(f"{path} is truncated or corrupt (not a complete torch zip archive); "
                                  "download it again") from None
    elif head[:1] != b"\x80":
        raise CheckpointError(f"{path} is not a torch checkpoint (unrecognised file header {head[:8]!r})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        msg = str(exc)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "UnpicklingError" in type(exc).__name__:
            found = re.search(r"(?:Unsupported global|GLOBAL)[^\w]*([\w.]+)", msg)
            what = f" (it references {found.group(1)})" if found else ""
            raise CheckpointError(f"refused to load {path}: it is a pickle that would import or run code{what}; "
                                  "jembench loads only tensors and plain containers (weights_only=True). Re-save "
                                  "it as {'model_state_dict': model.state_dict()} in a trusted environment") from None
        if isinstance(exc, (EOFError, RuntimeError)) or "EOF" in msg or "truncated" in msg.lower():
            raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__}); download it again") from None
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {msg.splitlines()[0] if msg else ''}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _clean_jem_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool, list[str]]:
    """Drop yopo aliases and the unused ``f.linear``; strip a ``module.`` (DataParallel) prefix."""
    notes: list[str] = []
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        notes.append("stripped DataParallel 'module.' prefix")
    yopo = any(k.startswith(tuple(_YOPO_ALIASES)) for k in sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        alias = next((a for a in _YOPO_ALIASES if k.startswith(a)), None)
        if alias is not None:
            canonical = _YOPO_ALIASES[alias] + k[len(alias):]
            if canonical not in sd:  # only the alias was saved: keep it under its canonical name
                out[canonical] = v
            continue
        if k.startswith("f.linear."):
            notes.append("dropped JEM's unused f.linear head")
            continue
        out[k] = v
    if yopo:
        notes.append("dropped JEM++ yopo aliases f.layer_one / f.other_layers")
    return out, yopo, sorted(set(notes))


def _unexplained(sd: dict[str, torch.Tensor], expected: set[str], path: Path) -> CheckpointError:
    unexpected = sorted(set(sd) - expected)
    missing = sorted(expected - set(sd))
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "") if keys else "none"
    return CheckpointError(f"{path}: keys no known architecture explains: unexpected {few(unexpected)}; "
                           f"missing {few(missing)} (jembench reads JEM/JEM++ WRN files and its own format; "
                           "other models: use jembench.wrap)")


def infer_wrn(sd: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Architecture of a JEM-layout WRN from its keys (REFERENCE.md section 1)."""
    needed = ("f.conv1.weight", "f.layer1.0.conv1.weight", "class_output.weight")
    if any(k not in sd for k in needed):
        raise _unexplained(sd, set(needed), path)
    n = len({int(m.group(1)) for k in sd if (m := re.match(r"f\.layer1\.(\d+)\.", k))})
    if "f.bn1.running_mean" in sd:
        norm = "batch"
    elif "f.bn1.loc" in sd:
        norm = "act"
    elif "f.bn1.weight" in sd:
        norm = "instance"  # GroupNorm(1, C) has the same keys: override with norm="layer"
    else:
        norm = "none"
    return {"depth": 6 * n + 4, "width": sd["f.layer1.0.conv1.weight"].shape[0] // 16, "norm": norm,
            "in_channels": sd["f.conv1.weight"].shape[1], "n_classes": sd["class_output.weight"].shape[0]}


def _build(arch: dict[str, Any], sd: dict[str, torch.Tensor], path: Path) -> JEMNet:
    net = JEMNet(arch["depth"], arch["width"], arch["norm"], arch["in_channels"], arch["n_classes"])
    expected = set(net.state_dict())
    if set(sd) != expected:
        raise _unexplained(sd, expected, path)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise CheckpointError(f"{path}: tensor shapes do not fit WRN-{arch['depth']}-{arch['width']}: {first}") from None
    return net


def load(path: str | os.PathLike, device: Optional[str | torch.device] = None, **overrides: Any) -> HybridModel:
    """Load a JEM, JEM++ or jembench checkpoint as a :class:`HybridModel` in eval mode.

    ``overrides`` set what a file cannot say: ``head`` ("ccf" or "f"), ``norm`` ("layer" for GroupNorm
    files, which share InstanceNorm's keys), ``dataset``, ``train_sigma``, ``name``, ``mean``/``std``,
    ``image_size``. Unknown override names raise ``TypeError``.
    """
    allowed = {"head", "norm", "dataset", "train_sigma", "name", "mean", "std", "image_size", "family"}
    unknown = set(overrides) - allowed
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    path = Path(path)
    obj = _read(path)
    notes: list[str] = []
    buffer = None
    extras: dict[str, Any] = {}
    if isinstance(obj, dict) and obj.get("format") == NATIVE_FORMAT:
        sd = obj["model_state_dict"]
        arch = dict(obj["architecture"])
        info = ModelInfo.from_dict({**obj["info"], **arch})
        info.source_format, info.jembench_version = NATIVE_FORMAT, obj.get("jembench_version")
        info.train_config = dict(obj.get("train_config") or {})
        buffer = obj.get("replay_buffer")
    else:
        if isinstance(obj, dict) and "model_state_dict" in obj:
            sd, buffer, fmt = obj["model_state_dict"], obj.get("replay_buffer"), "wrapped"
            extras = {k: v for k, v in obj.items() if k not in ("model_state_dict", "replay_buffer")}
        elif _is_state_dict(obj):
            sd, fmt = obj, "bare-state-dict"
        else:
            keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"{path}: not a model checkpoint (found {keys}; expected a state dict or a dict "
                                  "with 'model_state_dict')")
        if not _is_state_dict(sd):
            raise CheckpointError(f"{path}: 'model_state_dict' is not a dict of tensors")
        sd, yopo, notes = _clean_jem_keys(sd)
        arch = infer_wrn(sd, path)
        family = "jem++" if yopo else "jem"
        if arch["norm"] == "instance":
            notes.append("norm inferred as instance; GroupNorm ('layer') files have the same keys: pass norm='layer'")
        size = 8 if arch["in_channels"] == 1 and overrides.get("dataset") == "digits" else 32
        info = ModelInfo(family=family, source_format=family if fmt == "wrapped" else fmt, architecture="wrn",
                         n_classes=arch["n_classes"], in_channels=arch["in_channels"], image_size=(size, size),
                         depth=arch["depth"], width=arch["width"], norm=arch["norm"],
                         dataset=None, train_sigma=None,
                         bn_momentum=0.9 if arch["norm"] == "batch" else None, notes=notes)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "norm":
            if value not in NORMS:
                raise CheckpointError(f"unknown norm {value!r}; choose one of {', '.join(NORMS)}")
            arch["norm"] = value
        if key in ("mean", "std", "image_size"):
            value = tuple(value)
        setattr(info, key, value)
    if info.head not in ("ccf", "f"):
        raise CheckpointError(f"unknown head {info.head!r}: 'ccf' (log p(x) = logsumexp of logits) or 'f' (energy head)")
    info.path, info.sha256 = str(path), file_sha256(path)
    info.name = info.name or path.stem
    net = _build(arch, sd, path)
    if isinstance(buffer, torch.Tensor) and buffer.dim() != 4:
        info.notes.append(f"ignored replay_buffer of shape {tuple(buffer.shape)} (expected [N, C, H, W])")
        buffer = None
    model = HybridModel(net, info, replay_buffer=buffer if isinstance(buffer, torch.Tensor) else None, extras=extras)
    if device is not None:
        model.to(device)
    return model


def save_native(model: HybridModel, path: str | os.PathLike, *, replay_buffer: Optional[torch.Tensor] = None,
                train_state: Optional[dict[str, Any]] = None) -> None:
    """Write ``model`` in the native format, atomically (a crash never leaves half a file)."""
    from .. import __version__

    info = model.info
    arch = {"depth": info.depth, "width": info.width, "norm": info.norm, "in_channels": info.in_channels,
            "n_classes": info.n_classes}
    meta = {k: v for k, v in info.to_dict().items() if k not in ("path", "sha256", "value_range", "train_config")}
    payload: dict[str, Any] = {"format": NATIVE_FORMAT, "format_version": NATIVE_FORMAT_VERSION,
                               "jembench_version": __version__, "architecture": arch, "info": meta,
                               "train_config": info.train_config,
                               "model_state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()}}
    if replay_buffer is not None:
        payload["replay_buffer"] = replay_buffer.detach().cpu()
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
