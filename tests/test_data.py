"""Datasets: registry, torchvision sets on tiny files in their real formats, npz / folder sources, synthetic OOD sets,
adapt_to rules, load_ood_set, and every one-line error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
import torchvision.transforms.v2.functional as TF
from PIL import Image

from jembench.data import (SYNTHETIC_NAMES, ImageSet, adapt_to, get_dataset, get_spec, known_names, load_ood_set,
                           make_synthetic)
from jembench.data import digits as digits_module
from jembench.data import torchvision_sets as tv_sets
from jembench.data.catalog import download_datasets, list_datasets
from jembench.data.synthetic import interp_pairs
from jembench.errors import DatasetError
from jembench.runtime import derive_seed, generator

# ----------------------------------------------------------------------------------------------- fake files on disk


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def write_cifar10(root: Path, n: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """torchvision's layout: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, rows of 3072 bytes."""
    rng = np.random.default_rng(seed)
    out = {}
    for f, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        _pickle(root / "cifar-10-batches-py" / f, {"data": data, "labels": labels})
        out[f] = (data, labels)
    _pickle(root / "cifar-10-batches-py" / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return out


def write_cifar100(root: Path, n: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """cifar-100-python/{train, test, meta}; labels under fine_labels."""
    rng = np.random.default_rng(1)
    out = {}
    for f in ("train", "test"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        _pickle(root / "cifar-100-python" / f, {"data": data, "fine_labels": fine, "coarse_labels": [0] * n})
        out[f] = (data, fine)
    _pickle(root / "cifar-100-python" / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    return out


@pytest.fixture
def no_md5(monkeypatch):
    """Let tiny fakes through torchvision's md5 checks (only in the test; the real path keeps them)."""
    for cls in (tvd.CIFAR10, tvd.CIFAR100):
        monkeypatch.setattr(cls, "train_list", [[f, None] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, None] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": None})
    monkeypatch.setattr(tvd.SVHN, "split_list", {k: [u, f, None] for k, (u, f, _) in tvd.SVHN.split_list.items()})
    monkeypatch.setattr(tvd.CelebA, "file_list", [(i, None, f) for i, _, f in tvd.CelebA.file_list])


# ----------------------------------------------------------------------------------------------------- CIFAR / SVHN


def test_cifar10_pickle_batches(tmp_path, no_md5):
    written = write_cifar10(tmp_path)
    for split, files in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        s = get_dataset("cifar10", split, data_dir=tmp_path)
        want = np.concatenate([written[f][0] for f in files]).reshape(-1, 3, 32, 32)
        assert s.images.dtype == torch.uint8 and s.shape == (3, 32, 32) and len(s) == 4 * len(files)
        assert torch.equal(s.images, torch.from_numpy(want))
        assert s.labels.tolist() == sum((written[f][1] for f in files), [])
        assert s.n_classes == 10 and s.meta["classes"][3] == "c3" and s.split == split


def test_cifar100_fine_labels(tmp_path, no_md5):
    written = write_cifar100(tmp_path)
    s = get_dataset("cifar100", "test", data_dir=tmp_path)
    assert torch.equal(s.images, torch.from_numpy(written["test"][0].reshape(-1, 3, 32, 32)))
    assert s.labels.tolist() == written["test"][1] and s.n_classes == 100


def test_data_root_from_env(tmp_path, no_md5, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setenv("JEMBENCH_DATA", str(tmp_path))
    assert len(get_dataset("cifar10", "test")) == 4


def test_cifar_md5_is_checked_on_the_real_path(tmp_path):
    write_cifar10(tmp_path)  # not the real bytes: torchvision's md5 check must refuse them
    with pytest.raises(DatasetError, match=r"corrupted or incomplete.*jembench datasets --download cifar10 --data-dir"):
        get_dataset("cifar10", "test", data_dir=tmp_path)


def test_svhn_mat(tmp_path, no_md5):
    import scipy.io

    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # [H, W, C, N] as in the .mat files
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)  # digit 0 is stored as 10
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X, "y": y})
    s = get_dataset("svhn", "test", data_dir=tmp_path)
    assert s.shape == (3, 32, 32) and len(s) == 5
    assert torch.equal(s.images[3], torch.from_numpy(X[..., 3].transpose(2, 0, 1).copy()))
    assert s.labels.tolist() == [0, 1, 2, 0, 9]
    with pytest.raises(DatasetError, match=r"train_32x32\.mat; fetch it with: jembench datasets --download svhn"):
        get_dataset("svhn", "train", data_dir=tmp_path)  # only the test file is there


def _write_celeba(root: Path, colours: list[tuple[int, int, int]], partition: list[int]) -> None:
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(colours))]
    for name, c in zip(names, colours):  # 20 wide x 26 high, like CelebA's 178x218 portrait shape
        Image.new("RGB", (20, 26), c).save(base / "img_align_celeba" / name, quality=95)
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    (base / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in names))
    for f, cols in (("list_attr_celeba.txt", ["Smiling"]), ("list_bbox_celeba.txt", ["x_1"]),
                    ("list_landmarks_align_celeba.txt", ["lefteye_x"])):
        (base / f).write_text(f"{len(names)}\n{' '.join(cols)}\n" + "".join(f"{n} 1\n" for n in names))


def test_celeba_resized_to_32_unlabelled(tmp_path, no_md5, monkeypatch):
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (120, 120, 0)]
    _write_celeba(tmp_path, colours, [0, 2, 1, 2])
    s = get_dataset("celeba", "test", data_dir=tmp_path)
    assert s.shape == (3, 32, 32) and len(s) == 2 and s.labels is None
    for img, c in zip(s.images, [colours[1], colours[3]]):  # the two images of torchvision's "test" partition
        assert (img.to(torch.int16) - torch.tensor(c).view(3, 1, 1)).abs().max() <= 3  # JPEG of a flat colour
    assert "26x20 -> 42x32 (shorter side to 32" in s.meta["resize"] and "center crop 32x32" in s.meta["resize"]
    assert s.meta["decoded_cache"] == str(tmp_path / "celeba" / "jembench-test-32x32.npz")
    tv_sets._read_celeba.cache_clear()  # a new process: the decoded split comes from the cache file
    monkeypatch.setattr(tv_sets, "_decode_resize", lambda *a: pytest.fail("the cache must be used"))
    again = get_dataset("celeba", "test", data_dir=tmp_path)
    assert torch.equal(again.images, s.images) and again.meta["resize"] == s.meta["resize"]


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match=r"downloading 'cifar10' to .* failed: .*name resolution.*by hand") as e:
        get_dataset("cifar10", "test", data_dir=tmp_path, download=True)
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="downloading 'cifar10'"):
        download_datasets(["cifar10"], tmp_path)


def test_download_skips_present_files(tmp_path, no_md5, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive",
                        lambda *a, **k: pytest.fail("present files must not be fetched again"))
    assert len(get_dataset("cifar10", "test", data_dir=tmp_path, download=True)) == 4
    assert download_datasets(["cifar10", "digits"], tmp_path)[0].present == {"train": True, "test": True}


# ------------------------------------------------------------------------------------------------------------ digits


def test_digits_default():
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert train.shape == test.shape == (1, 8, 8) and (len(train), len(test)) == (1437, 360)
    assert (len(train), len(test)) == (get_spec("digits").sizes["train"], get_spec("digits").sizes["test"])
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255 and test.n_classes == 10
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class of ~180
    fp = test.fingerprint()
    digits_module._arrays.cache_clear()  # re-read from the shipped arrays: same images
    assert get_dataset("digits", "test").fingerprint() == fp


def test_shipped_digits_arrays_are_sklearns_split_exactly():
    """The npz shipped with the package = load_digits, round(v * 255 / 16), stratified 20% test with seed 0; the
    fingerprints are those the sklearn-built sets had before the arrays were shipped (results stay comparable)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=digits_module.TEST_FRACTION,
                                              random_state=digits_module.SPLIT_SEED, stratify=bunch.target)
    shipped = digits_module._arrays()
    for split, (x, y) in {"train": (x_tr, y_tr), "test": (x_te, y_te)}.items():
        assert np.array_equal(shipped[split][0], x) and np.array_equal(shipped[split][1].astype(np.int64), y)
    assert get_dataset("digits", "test").fingerprint() == \
        "2a5e0fcfaf6756a47071f11e1bb55825095fb62fc132db94ade8787f946ca833"
    assert get_dataset("digits", "train").fingerprint() == \
        "a91fe7353c210cab45747da5b457a6b559b559561aad17c6bd206c60c6278b6e"


# ----------------------------------------------------------------------------------------------------- npz / folder


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(3)
    nchw = rng.integers(0, 256, (5, 3, 4, 6), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=nchw, y=np.array([0, 1, 2, 1, 0]))
    np.savez(tmp_path / "b.npz", x=nchw.transpose(0, 2, 3, 1))
    np.savez(tmp_path / "c.npz", x=nchw[:, 0])  # [N, H, W] = one channel
    a, b, c = (get_dataset(f"npz:{tmp_path / f}.npz") for f in "abc")
    assert torch.equal(a.images, torch.from_numpy(nchw)) and torch.equal(b.images, a.images)
    assert (a.meta["layout"], b.meta["layout"], c.meta["layout"]) == ("NCHW", "NHWC", "NHW")
    assert a.labels.tolist() == [0, 1, 2, 1, 0] and b.labels is None and c.shape == (1, 4, 6)
    assert a.n_classes is None  # not max(y) + 1: a subset may lack the highest class; the model's count is used
    np.savez(tmp_path / "s.npz", x_train=nchw[:2], y_train=np.array([0, 1]), x_test=nchw[2:])
    assert len(get_dataset(f"npz:{tmp_path}/s.npz", "train")) == 2 and len(get_dataset(f"npz:{tmp_path}/s.npz")) == 3


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 3, 4, 4), np.float32)}, "dtype float32, expected uint8"),
    ({"images": np.zeros((2, 3, 4, 4), np.uint8)}, "no array 'x'.*arrays: images"),
    ({"x": np.zeros((2, 3, 5, 3), np.uint8)}, "both axis 1 and axis 3"),
    ({"x": np.zeros((2, 5, 5, 5), np.uint8)}, "no axis of size 1 or 3"),
    ({"x": np.zeros((2, 3, 4, 4, 1), np.uint8)}, r"expected \[N, C, H, W\]"),
    ({"x": np.zeros((2, 3, 4, 4), np.uint8), "y": np.array([0, 1, 2])}, "must hold 2 non-negative integer labels"),
    ({"x": np.zeros((2, 3, 4, 4), np.uint8), "y": np.array([0.5, 1.0])}, "integer labels"),
])
def test_npz_bad_arrays(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=message) as e:
        get_dataset(f"npz:{tmp_path}/bad.npz")
    assert "\n" not in str(e.value)


def test_npz_not_a_file_or_not_npz(tmp_path):
    (tmp_path / "page.npz").write_text("<html>not an array</html>")
    with pytest.raises(DatasetError, match="cannot read .* as .npz"):
        get_dataset(f"npz:{tmp_path}/page.npz")
    with pytest.raises(DatasetError, match="not found"):
        get_dataset(f"npz:{tmp_path}/missing.npz")


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_labels_from_names(tmp_path):
    rng = np.random.default_rng(4)
    pics = {(c, i): rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for c in ("dog", "cat") for i in range(2)}
    for (c, i), a in pics.items():
        _png(tmp_path / c / f"{i}.png", a)
    s = get_dataset(f"folder:{tmp_path}")
    assert s.shape == (3, 6, 5) and s.meta["classes"] == ["cat", "dog"] and s.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(s.images[2], torch.from_numpy(pics[("dog", 0)]).permute(2, 0, 1))
    assert s.meta["resize"] == "none" and s.n_classes == 2


def test_folder_sizes_gray_and_fakedata(tmp_path):
    (tmp_path / "rgb" / "a").mkdir(parents=True)
    for i, (img, _) in enumerate(tvd.FakeData(4, (3, 10, 12), 2)):  # PIL images, 10 high x 12 wide
        img.save(tmp_path / "rgb" / "a" / f"{i}.png")
    _png(tmp_path / "rgb" / "b" / "odd.png", np.full((20, 30, 3), 7, np.uint8))
    with pytest.raises(DatasetError, match=r"2 sizes .*folder:.*@32"):
        get_dataset(f"folder:{tmp_path / 'rgb'}")
    s = get_dataset(f"folder:{tmp_path / 'rgb'}@8")
    assert s.shape == (3, 8, 8) and len(s) == 5 and bool((s.images[4] == 7).all())
    assert "20x30 -> 8x12" in s.meta["resize"] and "10x12 -> 8x10" in s.meta["resize"]
    _png(tmp_path / "gray" / "x" / "0.png", np.full((4, 4), 9, np.uint8))
    g = get_dataset(f"folder:{tmp_path / 'gray'}")
    assert g.shape == (1, 4, 4) and g.meta["mode"] == "L"
    with pytest.raises(DatasetError, match="not found"):
        get_dataset(f"folder:{tmp_path / 'nowhere'}")


# ---------------------------------------------------------------------------------------------------- synthetic OOD


@pytest.fixture
def small_in():
    return get_dataset("digits", "test").first(50)


@pytest.mark.parametrize("name", SYNTHETIC_NAMES)
def test_synthetic_shape_seed_meta(small_in, name):
    a = make_synthetic(name, small_in, seed=3, n=20)
    assert a.images.dtype == torch.uint8 and a.shape == (1, 8, 8) and len(a) == 20 and a.labels is None
    assert a.meta["seed"] == 3 and a.meta["synthetic"] == name and a.meta["recipe"]
    assert torch.equal(make_synthetic(name, small_in, seed=3, n=20).images, a.images)
    if name != "rotated":  # rotated is deterministic by design
        assert not torch.equal(make_synthetic(name, small_in, seed=4, n=20).images, a.images)


def test_noise_and_uniform_statistics(small_in):
    v = make_synthetic("noise", small_in, n=1000).images.float() / 255  # 64,000 pixels
    p_low = 0.3085  # P(N(0.5, 1) < 0) = Phi(-0.5): clamped to 0 (and the same mass clamped to 1)
    assert abs((v == 0).float().mean().item() - p_low) < 0.01 and abs((v == 1).float().mean().item() - p_low) < 0.01
    u = make_synthetic("uniform", small_in, n=1000).images.float() / 255
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.std().item() - (1 / 12) ** 0.5) < 0.01


def test_constant_one_colour_per_image(small_in):
    c = make_synthetic("constant", small_in, n=30, shape=(3, 4, 4)).images
    assert c.shape == (30, 3, 4, 4) and torch.equal(c, c[:, :, :1, :1].expand_as(c))
    assert len(torch.unique(c[:, :, 0, 0], dim=0)) > 20


def test_interp_is_mean_of_distinct_pairs(small_in):
    s = make_synthetic("interp", small_in, seed=5, n=40)
    a, b = interp_pairs(len(small_in), 40, generator(derive_seed(5, "synthetic-ood", "interp")))
    assert bool((a != b).all())
    mean = (small_in.images[a].double() + small_in.images[b].double()) / 2
    assert (s.images.double() - mean).abs().max() <= 0.5
    assert torch.equal(s.images, torch.floor(mean + 0.5).to(torch.uint8))  # rounded half up
    with pytest.raises(DatasetError, match="at least 2"):
        make_synthetic("interp", small_in.first(1))


def test_rotated_90_counter_clockwise():
    s = ImageSet("t", "test", torch.tensor([[[[1, 2], [3, 4]]]], dtype=torch.uint8))
    assert make_synthetic("rotated", s).images[0, 0].tolist() == [[2, 4], [1, 3]]
    assert len(make_synthetic("rotated", s, n=10)) == 1


# ------------------------------------------------------------------------------------------------------------- adapt


def test_adapt_identity_records_none(small_in):
    out = adapt_to(small_in, (1, 8, 8))
    assert out.meta["preprocessing"] == "none" and out.images is small_in.images


def test_adapt_rgb_to_gray_matches_pil():
    rgb = torch.randint(0, 256, (3, 3, 5, 5), generator=generator(0), dtype=torch.uint8)
    gray = adapt_to(ImageSet("c", "test", rgb), (1, 5, 5))
    pil = np.stack([np.asarray(Image.fromarray(im.permute(1, 2, 0).numpy()).convert("L")) for im in rgb])
    assert (gray.images[:, 0].int() - torch.from_numpy(pil).int()).abs().max() <= 1  # PIL: ITU-R 601-2 luma
    primaries = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8).view(3, 3, 1, 1)
    assert adapt_to(ImageSet("p", "test", primaries), (1, 1, 1)).images.flatten().tolist() == [76, 150, 29]
    assert "ITU-R BT.601" in gray.meta["preprocessing"]


def test_adapt_gray_to_rgb_replicates(small_in):
    out = adapt_to(small_in, (3, 8, 8))
    assert torch.equal(out.images, small_in.images.repeat(1, 3, 1, 1)) and "replicat" in out.meta["preprocessing"]


@pytest.mark.parametrize("src, dst", [((16, 8), (4, 4)), ((8, 8), (16, 16)), ((10, 14), (7, 7)), ((6, 9), (4, 6))])
def test_adapt_resize_matches_torchvision(src, dst):
    x = torch.randint(0, 256, (4, 3, *src), generator=generator(1), dtype=torch.uint8)
    out = adapt_to(ImageSet("r", "test", x), (3, *dst))
    scale = max(dst[0] / src[0], dst[1] / src[1])
    size = [max(dst[0], round(src[0] * scale)), max(dst[1], round(src[1] * scale))]
    ref = TF.center_crop(TF.resize(x.float(), size, antialias=True), list(dst)).round().clamp(0, 255)
    assert out.shape == (3, *dst) and (out.images.float() - ref).abs().max() <= 1
    assert f"center crop {dst[0]}x{dst[1]}" in out.meta["preprocessing"]


def test_adapt_constant_stays_constant_and_bad_channels(small_in):
    flat = ImageSet("f", "test", torch.full((2, 3, 7, 11), 99, dtype=torch.uint8))
    assert bool((adapt_to(flat, (3, 32, 32)).images == 99).all())
    with pytest.raises(DatasetError, match="no rule converts 4 to 3 channels"):
        adapt_to(ImageSet("x", "test", torch.zeros((1, 4, 2, 2), dtype=torch.uint8)), (3, 2, 2))


# ------------------------------------------------------------------------------------------------------ load_ood_set


def test_load_ood_set_every_kind(tmp_path, small_in):
    d = load_ood_set("digits", small_in, (3, 16, 16), n=7)
    assert d.shape == (3, 16, 16) and len(d) == 7 and "gray -> RGB" in d.meta["preprocessing"]
    assert "resize 8x8 -> 16x16" in d.meta["preprocessing"] and d.labels is not None
    for name in SYNTHETIC_NAMES:
        s = load_ood_set(name, small_in, (1, 8, 8), seed=1, n=9)
        assert s.shape == (1, 8, 8) and len(s) == 9 and s.meta["preprocessing"] == "none"
    np.savez(tmp_path / "o.npz", x=np.zeros((3, 12, 12, 3), np.uint8))
    o = load_ood_set(f"npz:{tmp_path}/o.npz", small_in, (1, 8, 8))
    assert o.shape == (1, 8, 8) and "RGB -> gray" in o.meta["preprocessing"]
    _png(tmp_path / "f" / "a" / "0.png", np.zeros((9, 9, 3), np.uint8))
    _png(tmp_path / "f" / "a" / "1.png", np.zeros((12, 10, 3), np.uint8))
    f = load_ood_set(f"folder:{tmp_path / 'f'}", small_in, (3, 8, 8))  # mixed sizes go straight to the model's
    assert f.shape == (3, 8, 8) and len(f) == 2 and f.meta["preprocessing"] == "none"
    assert "9x9 -> 8x8" in f.meta["resize"]


# ------------------------------------------------------------------------------------------------------------ errors


def test_unknown_name_lists_known():
    with pytest.raises(DatasetError, match=r"unknown dataset 'cifar-10'; known: .*cifar10.*digits.*npz:PATH") as e:
        get_dataset("cifar-10")
    assert "\n" not in str(e.value) and "svhn" in known_names()
    with pytest.raises(DatasetError, match="synthetic OOD set"):
        get_dataset("interp")
    with pytest.raises(DatasetError, match="no split 'valid'; splits: train, test"):
        get_dataset("digits", "valid")


def test_absent_data_names_files_and_command(tmp_path):
    with pytest.raises(DatasetError) as e:
        get_dataset("cifar10", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert f"{tmp_path}/cifar-10-batches-py/{{data_batch_1" in msg and "test_batch, batches.meta}" in msg
    assert msg.endswith(f"fetch it with: jembench datasets --download cifar10 --data-dir {tmp_path}")
    assert "\n" not in msg
    with pytest.raises(DatasetError, match=r"celeba/\{img_align_celeba, .*list_eval_partition\.txt\}"):
        get_dataset("celeba", "test", data_dir=tmp_path)


def test_list_datasets_reports_presence(tmp_path):
    write_cifar10(tmp_path)
    st = {s.name: s for s in list_datasets(data_dir=tmp_path)}
    assert st["cifar10"].present == {"train": True, "test": True} and st["cifar10"].location == str(tmp_path)
    assert st["svhn"].present == {"train": False, "test": False} and st["digits"].location == "bundled"
    assert st["svhn"].missing["test"] == [str(tmp_path / "test_32x32.mat")]
    assert st["cifar100"].expected_sizes == {"train": 50000, "test": 10000} and st["cifar100"].sizes == {}
    assert st["svhn"].expected_sizes["test"] == 26032 and st["svhn"].state == {"train": "absent", "test": "absent"}
    # the tiny files fail torchvision's md5 check: every loader refuses them, so the catalogue says so (issue 12)
    assert st["cifar10"].state == {"train": "corrupt", "test": "corrupt"}
    assert "corrupt" in st["cifar10"].problems["test"]


def test_list_datasets_says_what_the_loaders_say_and_sizes_on_disk(tmp_path, no_md5):
    write_cifar10(tmp_path, 6)
    st = list_datasets(["cifar10"], data_dir=tmp_path)[0]
    assert st.state == {"train": "intact", "test": "intact"} and st.sizes == {"train": 30, "test": 6}  # 5 batches of 6
