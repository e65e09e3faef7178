"""Sample-quality metrics through torch-fidelity: Inception Score, FID, KID, precision / recall.

Functional core: images are quantised like real ones (:func:`quantize`: model space -> ``to_pixels01`` ->
clamp to [0, 1] -> ``round(255 x)`` -> uint8, torch-fidelity's input convention), features are extracted
by a torch-fidelity feature extractor (:func:`extract`), and the numbers come from torch-fidelity's own
functions on those features (:func:`fidelity_metrics`; KID from the same subsets, batched), so they equal
``torch_fidelity.calculate_metrics`` on the same images and extractor.

- IS (Salimans et al. 2016) = exp(E_x KL(p(y|x) || p(y))), mean and std over ``isc_splits`` splits of a
  shuffled set (shuffle seed recorded).
- FID (Heusel et al. 2017) = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)); biased in N.
- KID (Binkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel, mean / std over random subsets: torch-fidelity's
  subsets and formula, batched in torch (:mod:`jembench.metrics.kid`).
- Precision / recall (Kynkaanniemi et al. 2019), k-NN balls with k = ``prc_neighborhood``.

Reference features (and FID statistics) are cached on disk, keyed by the reference set's content
fingerprint, the extractor's name and sha256, and the torch-fidelity version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import distributed
from ..data.imageset import ImageSet
from .. import bundled
from ..errors import JembenchError
from ..io import atomic_savez, read_cache
from ..progress import track
from .kid import kernel_inception_distance
from .names import FIDELITY

INCEPTION = "inception-v3-compat"  # torch-fidelity's registry name
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")  # torch_fidelity.feature_extractor_inceptionv3
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
METRICS = FIDELITY
_TF_METRIC = {"is": "isc", "fid": "fid", "kid": "kid", "prc": "prc"}
CACHE_FORMAT = 1
EXTRACT_CHUNK_BATCHES = 8  # batches per torch-fidelity call (one progress step)


@dataclass
class Extractor:
    """A torch-fidelity feature extractor as jembench uses it: registry ``name``, weights file and its sha256."""

    name: str
    kind: str  # "inception" or "classifier"
    path: Optional[str]
    sha256: Optional[str]
    channels: int  # channels the extractor takes (grayscale is replicated for Inception)
    layers: dict[str, str] = field(default_factory=dict)  # our metric name -> feature layer
    input_shape: Optional[tuple[int, ...]] = None  # (C, H, W) a classifier extractor takes; None: any
    n_classes: Optional[int] = None  # classes of a classifier extractor

    def describe(self) -> dict[str, Any]:
        """What identifies the extractor (the file's path is left out: it differs between machines)."""
        return {"name": self.name, "kind": self.kind, "file": Path(self.path).name if self.path else None,
                "sha256": self.sha256, "layers": dict(self.layers),
                "input": "uint8 [N, C, H, W] (torch-fidelity convention)"}


def to_uint8(pixels01: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 by ``round(255 * clamp(x, 0, 1))`` (how real images were stored)."""
    return (pixels01.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def quantize(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Model-space samples -> uint8 images: ``to_pixels01`` -> clamp -> ``round(255 x)``; on CPU."""
    return to_uint8(model.to_pixels01(x.detach().float()).cpu())


class UInt8Images(Dataset):
    """uint8 ``[N, C, H, W]`` images as a torch Dataset for torch-fidelity; gray -> RGB when ``channels`` is 3."""

    def __init__(self, images: torch.Tensor, channels: Optional[int] = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 [N, C, H, W] images, got {images.dtype} {tuple(images.shape)}")
        if channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        self.images = images.contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


# --- extractors ----------------------------------------------------------------------------------
def inception_weights(fid_weights: Optional[str | Path] = None, *, offline: bool = False) -> Path:
    """The Inception weights file: ``fid_weights``, else torch's hub cache, else downloaded there now.

    Offline without the file raises at once, naming the file torch-fidelity expects.
    """
    if fid_weights is not None:
        path = Path(fid_weights).expanduser()
        if not path.is_file():
            raise JembenchError(f"--fid-weights {path}: no such file (expected torch-fidelity's {INCEPTION_FILE})")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    if offline:
        from ..feature_extractors import choose_hint

        raise JembenchError(f"offline and torch-fidelity's Inception weights are not here: fetch {INCEPTION_URL} on a "
                            f"machine with internet, then pass --fid-weights PATH/{INCEPTION_FILE} (or copy it to "
                            f"{cached}); or {choose_hint('PATH')}: a jembench classifier trained on this dataset")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=True)
    except Exception as exc:  # noqa: BLE001 - any network failure becomes one line
        raise JembenchError(f"could not download torch-fidelity's Inception weights ({type(exc).__name__}: {exc}); "
                            f"fetch {INCEPTION_URL} elsewhere and pass --fid-weights PATH, or use --offline "
                            "with a bundled extractor") from None
    return cached


def resolve_extractor(choice: str, dataset: str, *, fid_weights: Optional[str | Path] = None,
                      offline: bool = False) -> Extractor:
    """``choice``: "auto" (the dataset's bundled reference classifier, else Inception), "inception", the name of
    a bundled extractor (e.g. "digits-wrn"), or the path of a jembench classifier checkpoint."""
    from .. import feature_extractors as fx
    from ..models.checkpoints import file_sha256

    if choice == "auto":
        found = fx.bundled(dataset)
        choice = found[0] if found else "inception"
    if choice == "inception":
        path = inception_weights(fid_weights, offline=offline)
        ext = Extractor(INCEPTION, "inception", str(path), file_sha256(path), 3,
                        {"is": "logits_unbiased", "fid": "2048", "kid": "2048", "prc": "2048"})
        _torch_fidelity_extractor(ext, torch.device("cpu"))  # load the weights now: a bad file fails before sampling
        return ext
    by_name = {b.name: ds for ds, b in fx.BUNDLED.items()}
    if choice in by_name:
        name, path = fx.bundled(by_name[choice])  # type: ignore[misc]
    elif bundled.is_bundled(choice) or Path(choice).expanduser().is_file():
        path = bundled.resolve(choice).expanduser()
        sha = file_sha256(path)
        known = fx.bundled_name(sha)  # a copy of a bundled extractor keeps its name (and its metric columns)
        name = fx.register_classifier(known[1] if known else f"{path.stem}-{sha[:8]}", path, sha)
    else:
        known = ", ".join(["auto", "inception", *sorted(by_name)])
        raise JembenchError(f"feature extractor {choice!r}: neither a known extractor ({known}) nor a "
                            "checkpoint file (bundled:NAME or a path)")
    from ..models import load

    model = load(path)
    layers = {m: fx.ClassifierFeatureExtractor.get_default_feature_layer_for_metric(_TF_METRIC[m]) for m in METRICS}
    return Extractor(name, "classifier", str(path), file_sha256(path), model.info.in_channels, layers,
                     (model.info.in_channels, *model.info.image_size), model.info.n_classes)


_CREATED: dict[tuple, Any] = {}


def _torch_fidelity_extractor(ext: Extractor, device: torch.device) -> Any:
    """torch-fidelity's extractor object (created once per process and extractor), on ``device``."""
    from torch_fidelity.utils import create_feature_extractor

    key = (ext.name, ext.sha256)
    if key not in _CREATED:
        if ext.kind == "inception":
            _check_weights_only(ext.path)
        try:
            _CREATED[key] = create_feature_extractor(ext.name, sorted(set(ext.layers.values())), cuda=False,
                                                     verbose=False, feature_extractor_weights_path=ext.path)
        except JembenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - wrong keys / shapes: one line, not a traceback
            first = (str(exc).strip().splitlines() or [""])[0][:120]
            raise JembenchError(f"feature extractor {ext.name}: {ext.path} does not load ({type(exc).__name__}: "
                                f"{first})" + (f"; use {INCEPTION_FILE}" if ext.kind == "inception" else "")) from None
    return _CREATED[key].to(device)


def _check_weights_only(path: Optional[str]) -> None:
    """torch-fidelity reads weights with ``weights_only=False``: refuse a file that holds more than tensors."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise JembenchError(f"refused Inception weights {path}: not a plain tensor file ({type(exc).__name__}); "
                            f"use torch-fidelity's {INCEPTION_FILE}") from None


def extract(ext: Extractor, images: torch.Tensor, *, batch_size: int = 256,
            device: Optional[torch.device] = None, progress: bool = False) -> dict[str, torch.Tensor]:
    """Features ``{layer: [N, D]}`` of uint8 images, through torch-fidelity's dataset loop. Under torchrun each
    rank extracts whole batches of its block of images and the features are gathered in image order."""
    from torch_fidelity.utils import get_featuresdict_from_dataset

    device = torch.device(device or "cpu")
    if device.type not in ("cpu", "cuda"):
        device = torch.device("cpu")  # torch-fidelity moves batches with .cuda() or not at all
    if ext.input_shape is not None and tuple(images.shape[1:]) != tuple(ext.input_shape):
        from ..feature_extractors import choose_hint

        raise JembenchError(f"feature extractor {ext.name} takes images of shape {tuple(ext.input_shape)}, got "
                            f"{tuple(images.shape[1:])}: choose one for this dataset ({choose_hint('NAME|PATH')})")
    fe = _torch_fidelity_extractor(ext, device)
    lo, hi = distributed.shard(len(images), align=batch_size)
    mine = images[lo:hi] if hi > lo else images[:1]  # a rank without images extracts one for the feature shapes
    chunk = batch_size * EXTRACT_CHUNK_BATCHES  # torch-fidelity's loop in chunks, so a bar can show progress
    parts = [get_featuresdict_from_dataset(UInt8Images(mine[s:s + chunk], ext.channels), fe, batch_size,
                                           device.type == "cuda", save_cpu_ram=True, verbose=False)
             for s in track(range(0, len(mine), chunk), desc=f"features {ext.name}, {len(mine)} images",
                            unit="chunk", enabled=progress)]
    return {k: distributed.gather(torch.cat([p[k] for p in parts])[:hi - lo].float()) for k in parts[0]}


# --- reference features, cached by content --------------------------------------------------------
def reference_key(imageset: ImageSet, ext: Extractor) -> str:
    import torch_fidelity

    blob = json.dumps([CACHE_FORMAT, imageset.fingerprint(), ext.name, ext.sha256, sorted(set(ext.layers.values())),
                       torch_fidelity.__version__])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def reference_features(imageset: ImageSet, ext: Extractor, *, cache_dir: Optional[str | Path] = None,
                       batch_size: int = 256, device: Optional[torch.device] = None, progress: bool = False
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Features of the reference images (and FID statistics as ``fid_mu`` / ``fid_sigma``), with cache info."""
    key = reference_key(imageset, ext)
    name = f"{imageset.name}-{imageset.split}-{ext.name}-{key}.npz"
    path = Path(cache_dir).expanduser() / name if cache_dir else None
    info = {"key": key, "path": str(path) if path else None, "hit": False}
    cached = distributed.from_main(read_cache(path, _read_features, "reference-feature")  # unreadable: deleted
                                   if distributed.is_main() else None)  # rank 0 reads it and hands it to the others
    if cached is not None:
        info["hit"] = True
        return cached, info
    feats = extract(ext, imageset.images, batch_size=batch_size, device=device, progress=progress)
    stats = _fid_statistics(feats[ext.layers["fid"]])
    feats["fid_mu"], feats["fid_sigma"] = torch.from_numpy(stats["mu"]), torch.from_numpy(stats["sigma"])
    if path is not None and distributed.is_main():
        atomic_savez(path, **feats)
    return feats, info


def _read_features(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path, allow_pickle=False) as z:
        feats = {k: torch.from_numpy(z[k]) for k in z.files}
    if "fid_mu" not in feats or "fid_sigma" not in feats:
        raise KeyError("fid_mu / fid_sigma")
    return feats


def _fid_statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.float().cpu())


# --- the metrics -----------------------------------------------------------------------------------
def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's IS (mean, std over ``splits``) of logits, rows shuffled with ``seed``."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    r = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=int(seed) % (2 ** 32))
    return r["inception_score_mean"], r["inception_score_std"]


def fidelity_metrics(fake: dict[str, torch.Tensor], real: Optional[dict[str, torch.Tensor]], ext: Extractor, *,
                     metrics: Sequence[str] = METRICS, isc_splits: int = 10, kid_subsets: int = 100,
                     kid_subset_size: int = 1000, prc_neighborhood: int = 3, seed: int = 2020
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """torch-fidelity's IS / FID / KID / PRC on extracted features -> ``(values, settings)``.

    ``values`` keys: is, is_std, fid, kid, kid_std, precision, recall. ``kid_subset_size`` is capped at the
    smaller set's size; ``settings`` records what was used. ``seed`` drives the IS shuffle and KID subsets.
    """
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise JembenchError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRICS)}")
    seed = int(seed) % (2 ** 32)
    out: dict[str, float] = {}
    settings: dict[str, Any] = {"metrics": list(metrics), "rng_seed": seed}
    layer = ext.layers
    if "is" in metrics:
        out["is"], out["is_std"] = inception_score(fake[layer["is"]], isc_splits, seed)
        settings["isc_splits"] = isc_splits
    if real is None:
        return out, settings
    if "fid" in metrics:
        s_real = {"mu": real["fid_mu"].numpy(), "sigma": real["fid_sigma"].numpy()} if "fid_mu" in real \
            else _fid_statistics(real[layer["fid"]])
        s_fake = _fid_statistics(fake[layer["fid"]])
        out["fid"] = fid_statistics_to_metric(s_fake, s_real, False)["frechet_inception_distance"]
    if "kid" in metrics:
        size = min(kid_subset_size, len(fake[layer["kid"]]), len(real[layer["kid"]]))
        out["kid"], out["kid_std"] = kernel_inception_distance(fake[layer["kid"]], real[layer["kid"]], kid_subsets,
                                                               size, seed)
        settings.update(kid_subsets=kid_subsets, kid_subset_size=size, kid_kernel="poly degree 3, gamma 1/d, coef0 1")
    if "prc" in metrics:
        r = prc_features_to_metric(fake[layer["prc"]], real[layer["prc"]], prc_neighborhood=prc_neighborhood,
                                   verbose=False)
        out["precision"], out["recall"] = r["precision"], r["recall"]
        settings["prc_neighborhood"] = prc_neighborhood
    return out, settings
