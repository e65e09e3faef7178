"""Reading JEM, JEM++ and jembench checkpoint files; writing the native format.

Formats (checkpoints/README.md has the full story):
- JEM / JEM++: ``{"model_state_dict": sd, "replay_buffer": buf}`` or a bare state dict ``sd``, possibly with
  DataParallel's ``module.`` prefix. The architecture is inferred from the keys (REFERENCE.md section 1).
  JEM++'s "yopo" trunk registers ``f.layer_one`` and ``f.other_layers.{0..3}`` as aliases of ``f.conv1``,
  ``f.layer1..3``, ``f.bn1``: they are checked equal and dropped, as is JEM's unused ``f.linear``.
- jembench native: ``{"format": "jembench", ...}`` records the architecture, input normalisation, dataset,
  training configuration and jembench version, so nothing is guessed.
Every file is read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from .. import bundled
from ..errors import CheckpointError, DatasetError, JembenchError
from ..io import atomic_write_bytes
from .finite import check_state, nonfinite_tensors
from .hybrid import HybridModel, ModelInfo, describe
from .wrn import NORMS, JEMNet

NATIVE_FORMAT = "jembench"
NATIVE_FORMAT_VERSION = 1
DEFAULT_IMAGE_SIZE = (32, 32)  # JEM / JEM++ files record no image size; their code assumes 32x32
OVERRIDES = ("head", "norm", "dataset", "train_sigma", "name", "mean", "std", "image_size", "family")
HEADS = ("ccf", "f")
_YOPO_ALIASES = {"f.layer_one.": "f.conv1.", "f.other_layers.0.": "f.layer1.", "f.other_layers.1.": "f.layer2.",
                 "f.other_layers.2.": "f.layer3.", "f.other_layers.3.": "f.bn1."}
_CODE_GLOBAL = re.compile(r"(?:Unsupported global|GLOBAL)\W*([\w.]+)")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_header(path: Path) -> None:
    """Recognise what a file is before unpickling it: the common wrong files get a precise message."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path, or set $JEMBENCH_CKPT; "
                              "the shipped ones are bundled:jem-digits, bundled:baseline-digits)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory: {path} (give the .pt file inside it)")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path} (download it again)")
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        raise CheckpointError(f"{path} is a Git LFS pointer, not the checkpoint (run `git lfs pull` to fetch it)")
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise CheckpointError(f"{path} is an HTML/XML page, not a torch checkpoint (a download link saved the web "
                              "page? fetch the raw file)")
    if text.startswith((b"{", b"[")):
        raise CheckpointError(f"{path} is a JSON/text file, not a torch checkpoint")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise CheckpointError(f"{path} is truncated or corrupt (not a complete torch zip archive); "
                                  "download it again") from None
        if bad is not None:
            raise CheckpointError(f"{path} is corrupt (bad CRC in {bad}); download it again")
        if not any(n.endswith("/data.pkl") for n in names):  # torch.save writes ARCHIVE/data.pkl
            raise CheckpointError(f"{path} is a zip archive but not a torch checkpoint (no data.pkl; it holds "
                                  f"{_few(names)}): unpack it, or give the .pt file written by torch.save")
    elif head[:1] != b"\x80":  # the legacy (non-zip) torch format starts with a pickle protocol opcode
        raise CheckpointError(f"{path} is not a torch checkpoint (unrecognised file header {head[:8]!r})")


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The raw object in a checkpoint file, read safely (``weights_only=True``); every failure is one line."""
    path = Path(path)
    _check_header(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        msg = str(exc)
        found = _CODE_GLOBAL.search(msg)
        if found:
            raise CheckpointError(
                f"refused to load {path}: it is a pickle that would import or run code (it references "
                f"{found.group(1)}); jembench loads only tensors and plain containers (weights_only=True). If you "
                "trust it, re-save it as {'model_state_dict': model.state_dict()}") from None
        first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(exc).__name__)
        raise CheckpointError(f"{path} is truncated or corrupt ({first[:160]}); download it again") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def _unexplained(sd: dict[str, torch.Tensor], expected: set[str], path: Path) -> CheckpointError:
    unexpected, missing = sorted(set(sd) - expected), sorted(expected - set(sd))
    return CheckpointError(f"{path}: keys no known architecture explains: unexpected {_few(unexpected)}; "
                           f"missing {_few(missing)} (jembench reads JEM/JEM++ WRN files and its own format; "
                           "other models: use jembench.wrap)")


def clean_jem_keys(sd: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], bool, list[str]]:
    """Strip DataParallel's ``module.``; drop JEM++ yopo aliases (checked equal) and JEM's unused ``f.linear``.

    Returns the cleaned state dict, whether yopo aliases were present, and notes on what was done.
    """
    notes: list[str] = []
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        notes.append("stripped DataParallel 'module.' prefix")
    yopo = False
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        alias = next((a for a in _YOPO_ALIASES if k.startswith(a)), None)
        if alias is not None:
            yopo = True
            canonical = _YOPO_ALIASES[alias] + k[len(alias):]
            if canonical not in sd:  # only the alias was saved: keep it under its canonical name
                out[canonical] = v
            elif sd[canonical].shape != v.shape or not torch.equal(sd[canonical], v):
                raise CheckpointError(f"{path}: JEM++ alias {k} differs from {canonical}; in a yopo network they are "
                                      "the same module, so this file was edited or is corrupt")
            continue
        if k.startswith("f.linear."):
            if "dropped JEM's unused f.linear head" not in notes:
                notes.append("dropped JEM's unused f.linear head")
            continue
        out[k] = v
    if yopo:
        notes.append("dropped JEM++ yopo aliases f.layer_one / f.other_layers (equal to f.conv1 / f.layer1-3, f.bn1)")
    return out, yopo, notes


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
    stage1 = sd["f.layer1.0.conv1.weight"].shape[0]
    if stage1 % 16:
        raise CheckpointError(f"{path}: f.layer1.0.conv1 has {stage1} output channels, not a multiple of 16: "
                              "not a JEM Wide-ResNet (other models: use jembench.wrap)")
    return {"depth": 6 * n + 4, "width": stage1 // 16, "norm": norm,
            "in_channels": sd["f.conv1.weight"].shape[1], "n_classes": sd["class_output.weight"].shape[0]}


def _build(arch: dict[str, Any], sd: dict[str, torch.Tensor], path: Path) -> JEMNet:
    """The network for ``arch`` holding ``sd``'s tensors, after checking keys and shapes.

    Built on the meta device and filled with ``assign=True``: no random initialisation and no copy, which
    makes loading a WRN-28-10 several times faster and halves its peak memory.
    """
    with torch.device("meta"):
        net = JEMNet(arch["depth"], arch["width"], arch["norm"], arch["in_channels"], arch["n_classes"])
    expected = net.state_dict()
    if arch["norm"] == "batch":  # files from torch < 0.4.1 lack the BN batch counters; they are unused in eval
        sd = {**{k: torch.tensor(0) for k in expected if k.endswith("num_batches_tracked")}, **sd}
    if set(sd) != set(expected):
        raise _unexplained(sd, set(expected), path)
    bad = [f"{k} is {tuple(sd[k].shape)}, expected {tuple(v.shape)}" for k, v in expected.items()
           if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{path}: tensor shapes do not fit WRN-{arch['depth']}-{arch['width']} "
                              f"(norm {arch['norm']}, {arch['n_classes']} classes): {'; '.join(bad[:3])}"
                              f"{f' (+{len(bad) - 3} more)' if len(bad) > 3 else ''}")
    check_state(sd, str(path))
    sd = {k: v.to(expected[k].dtype) for k, v in sd.items()}  # e.g. half-precision files -> float32
    net.load_state_dict(sd, strict=True, assign=True)
    return net


def _dataset_shape(name: str, n_classes: int, in_channels: int, path: Path,
                   must_exist: bool) -> Optional[tuple[int, int, int]]:
    """The registered (C, H, W) of dataset ``name``, checked against the checkpoint's class count and input
    channels; None for generic ``npz:``/``folder:`` sources and (unless ``must_exist``) unregistered names."""
    from ..data.registry import GENERIC_PREFIXES, get_spec

    if name.startswith(GENERIC_PREFIXES):
        return None
    try:
        spec = get_spec(name)
    except DatasetError as exc:
        if not must_exist:
            return None
        raise CheckpointError(f"dataset={name!r}: {exc}") from None
    if spec.n_classes is not None and spec.n_classes != n_classes:
        raise CheckpointError(f"{path} has {n_classes} classes but dataset {name!r} has {spec.n_classes}: pass the "
                              "dataset it was trained on (or the right checkpoint)")
    if spec.shape[0] != in_channels:
        raise CheckpointError(f"{path} takes {in_channels}-channel images but dataset {name!r} has {spec.shape[0]}: "
                              "pass the dataset it was trained on")
    return tuple(spec.shape)


def _native(obj: dict[str, Any], path: Path) -> tuple[dict, dict, ModelInfo]:
    version = obj.get("format_version", 0)
    if not isinstance(version, int) or version > NATIVE_FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer jembench (format version {version}, this one reads "
                              f"{NATIVE_FORMAT_VERSION}): upgrade jembench")
    missing = [k for k in ("model_state_dict", "architecture", "info") if not isinstance(obj.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path}: jembench file without {', '.join(missing)}; it is damaged: re-save it")
    arch = dict(obj["architecture"])
    try:
        info = ModelInfo.from_dict({**obj["info"], **arch})
    except TypeError as exc:
        raise CheckpointError(f"{path}: jembench file with an incomplete info record ({exc})") from None
    info.source_format, info.jembench_version = NATIVE_FORMAT, obj.get("jembench_version")
    info.train_config = dict(obj.get("train_config") or {})
    return obj["model_state_dict"], arch, info


def _jem(obj: Any, path: Path) -> tuple[dict, dict, ModelInfo, Any, dict]:
    extras: dict[str, Any] = {}
    buffer = None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        sd, buffer, wrapped = obj["model_state_dict"], obj.get("replay_buffer"), True
        extras = {k: v for k, v in obj.items() if k not in ("model_state_dict", "replay_buffer")}
        if not _is_state_dict(sd):
            raise CheckpointError(f"{path}: 'model_state_dict' is not a dict of tensors")
    elif _is_state_dict(obj):
        sd, wrapped = obj, False
    elif isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a model checkpoint (a dict with keys {_few([str(k) for k in obj])}; "
                              "expected a state dict or a dict with 'model_state_dict')")
    else:
        raise CheckpointError(f"{path}: not a model checkpoint (it holds a {type(obj).__name__}; expected a state "
                              "dict or a dict with 'model_state_dict')")
    sd, yopo, notes = clean_jem_keys(sd, path)
    arch = infer_wrn(sd, path)
    family = "jem++" if yopo else "jem"
    info = ModelInfo(family=family, source_format=family if wrapped else "bare-state-dict", architecture="wrn",
                     n_classes=arch["n_classes"], in_channels=arch["in_channels"], image_size=DEFAULT_IMAGE_SIZE,
                     depth=arch["depth"], width=arch["width"], norm=arch["norm"], notes=notes)
    return sd, arch, info, buffer, extras


def load(path: str | os.PathLike, device: Optional[str | torch.device] = None, *,
         default_dataset: Optional[str] = None, **overrides: Any) -> HybridModel:
    """A JEM, JEM++ or jembench checkpoint (or a ``poe:A.pt@w,B.pt`` product of experts), in eval mode. ``overrides``
    set what a file cannot say: ``head`` ("ccf": log p(x) = logsumexp of logits, the default; "f": JEM's
    ``--uncond`` energy head), ``norm`` ("layer" for GroupNorm files, which share InstanceNorm's keys), ``dataset``
    (sets the image size of JEM files and is checked against the class count), ``train_sigma``, ``name``,
    ``mean``/``std`` (model input = (pixel01 - mean) / std), ``image_size``, ``family``. ``None`` values are
    ignored. ``default_dataset`` is the dataset to assume when the file records none (JEM / JEM++ files): it then
    acts as ``dataset=``; native files keep their own. Unknown override names raise ``TypeError``; anything wrong
    with the file raises a one-line :class:`CheckpointError`."""
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)}; allowed: {list(OVERRIDES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if str(path).startswith("poe:"):  # a product of experts (models/compose.py)
        from .compose import load_spec
        return load_spec(str(path), device, default_dataset=default_dataset, **overrides)
    path = bundled.resolve(path)  # bundled:NAME -> the file shipped in the package
    obj = read_checkpoint(path)
    buffer, extras = None, {}
    native = isinstance(obj, dict) and obj.get("format") == NATIVE_FORMAT
    if native:
        sd, arch, info = _native(obj, path)
        buffer, extras = obj.get("replay_buffer"), dict(obj.get("extras") or {})
    else:
        sd, arch, info, buffer, extras = _jem(obj, path)
        if default_dataset and "dataset" not in overrides and ":" not in default_dataset:
            overrides["dataset"] = default_dataset
    if buffer is not None and not (isinstance(buffer, torch.Tensor) and buffer.dim() == 4
                                   and buffer.shape[1] == info.in_channels and not nonfinite_tensors({"b": buffer})):
        shape = tuple(buffer.shape) if isinstance(buffer, torch.Tensor) else type(buffer).__name__
        info.notes.append(f"ignored replay_buffer {shape} (expected [N, {info.in_channels}, H, W], finite)")
        buffer = None
    _apply_overrides(info, arch, overrides, native, buffer, path)
    info.path, info.sha256 = str(path), file_sha256(path)
    info.name = info.name or path.stem
    net = _build(arch, sd, path)
    if arch["norm"] == "act" and any(not m.initialized.item() for m in net.modules() if hasattr(m, "initialized")):
        info.notes.append("ActNorm layers were never initialised: they initialise on the first batch "
                          "(as in JEM's code)")
    model = HybridModel(net, info, replay_buffer=buffer, extras=extras)
    if device is not None:
        from ..runtime import resolve_device

        model.to(resolve_device(device))
    return model


def _apply_overrides(info: ModelInfo, arch: dict[str, Any], overrides: dict[str, Any], native: bool,
                     buffer: Optional[torch.Tensor], path: Path) -> None:
    """Set what the caller knows; fill the image size of JEM files; check dataset, head, norm, mean/std."""
    if "norm" in overrides:
        if overrides["norm"] not in NORMS:
            raise CheckpointError(f"unknown norm {overrides['norm']!r}; choose one of {', '.join(NORMS)}")
        arch["norm"] = overrides["norm"]
    for key, value in overrides.items():
        setattr(info, key, tuple(value) if key in ("mean", "std", "image_size") else value)
    if info.head not in HEADS:
        raise CheckpointError(f"unknown head {info.head!r}: 'ccf' (log p(x) = logsumexp of logits) or 'f' "
                              "(energy head of JEM's --uncond models)")
    c = info.in_channels
    for key in ("mean", "std"):
        value = tuple(float(v) for v in getattr(info, key))
        if len(value) not in (1, c):
            raise CheckpointError(f"{key}={value} has {len(value)} values; the model takes {c} channels")
        setattr(info, key, value * c if len(value) == 1 else value)
    shape = _dataset_shape(info.dataset, info.n_classes, c, path, "dataset" in overrides) if info.dataset else None
    if "image_size" in overrides:
        info.notes.append(f"image size {tuple(info.image_size)} set by the caller")
    elif native:
        if shape is not None and tuple(shape[1:]) != tuple(info.image_size):
            raise CheckpointError(f"{path} takes {tuple(info.image_size)} images but dataset {info.dataset!r} has "
                                  f"{tuple(shape[1:])}: pass the dataset it was trained on")
    elif shape is not None:
        info.image_size = tuple(shape[1:])
        info.notes.append(f"image size {info.image_size} from dataset {info.dataset!r} (JEM files do not record it)")
    elif buffer is not None:
        info.image_size = tuple(buffer.shape[2:])
        info.notes.append(f"image size {info.image_size} from the replay buffer (JEM files do not record it)")
    else:
        info.notes.append(f"image size {DEFAULT_IMAGE_SIZE} assumed (JEM files do not record it; pass dataset= "
                          "to use its shape)")
    if native:
        return
    if arch["norm"] == "instance" and "norm" not in overrides:
        info.notes.append("norm inferred as instance; GroupNorm ('layer') files have the same keys: pass norm='layer'")
    if arch["norm"] == "batch":
        info.bn_momentum = 0.9  # JEM's get_norm and JEM++ both use BatchNorm2d(momentum=0.9)
    if "head" not in overrides:
        info.notes.append("head assumed ccf (log p(x) = logsumexp of logits); JEM files do not say: pass head='f' "
                          "for --uncond models")
    info.norm = arch["norm"]


def save_native(model: HybridModel, path: str | os.PathLike, *, replay_buffer: Optional[torch.Tensor] = None,
                train_state: Optional[dict[str, Any]] = None, extras: Optional[dict[str, Any]] = None) -> None:
    """Write ``model`` in the native format, atomically (a crash never leaves half a file).

    ``replay_buffer`` defaults to ``model.replay_buffer``, ``extras`` (tensors and plain containers, e.g. JEM++
    per-class Gaussian statistics) to ``model.extras``; ``train_state`` (optimizer state, step) is for resuming.
    """
    from ..version import __version__

    if not isinstance(model.net, JEMNet):
        raise JembenchError(f"save_native writes JEM-layout WRNs only; {model.info.architecture} is a wrapped module: "
                            "save its state_dict yourself and wrap it again after loading")
    info = model.info
    arch = {"depth": info.depth, "width": info.width, "norm": info.norm, "in_channels": info.in_channels,
            "n_classes": info.n_classes}
    meta = {k: v for k, v in info.to_dict().items() if k not in ("path", "sha256", "value_range", "train_config")}
    buffer = replay_buffer if replay_buffer is not None else model.replay_buffer
    extras = extras if extras is not None else model.extras
    payload: dict[str, Any] = {"format": NATIVE_FORMAT, "format_version": NATIVE_FORMAT_VERSION,
                               "jembench_version": __version__, "architecture": arch, "info": meta,
                               "train_config": dict(info.train_config),
                               "model_state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()}}
    if buffer is not None:
        payload["replay_buffer"] = buffer.detach().cpu()
    if extras:
        payload["extras"] = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in extras.items()}
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`jembench.io.atomic_write_bytes`: readers never see half a file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def inspect_checkpoint(path: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """The Python side of ``jembench inspect``: :func:`jembench.models.describe` of the loaded checkpoint."""
    return describe(load(path, **overrides))
