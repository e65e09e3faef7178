"""IS / FID / KID / precision-recall glue: known answers, torch-fidelity's own calculate_metrics, quantisation,
the bundled digits extractor, and the offline failure."""

import pytest
import torch

from jembench.data import get_dataset
from jembench.errors import JembenchError
from jembench.metrics import fidelity
from jembench.runtime import generator


@pytest.fixture(scope="module")
def digits_ext():
    return fidelity.resolve_extractor("auto", "digits")


@pytest.fixture(scope="module")
def train():
    return get_dataset("digits", "train")


def _noisy(images, sigma, seed=0):
    noise = torch.randn(images.shape, generator=generator(seed)) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def test_bundled_extractor_is_named_hashed_registered_and_accurate(digits_ext):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from jembench.models.checkpoints import file_sha256

    assert digits_ext.name == "digits-wrn" and digits_ext.name in FEATURE_EXTRACTORS_REGISTRY
    assert digits_ext.sha256 == file_sha256(digits_ext.path)
    assert digits_ext.describe()["sha256"] == digits_ext.sha256
    test = get_dataset("digits", "test")
    logits = fidelity.extract(digits_ext, test.images)["logits"]
    assert (logits.argmax(1) == test.labels).float().mean() > 0.95  # a reference classifier worth its name


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_the_shift(digits_ext, train):
    real, _ = fidelity.reference_features(train, digits_ext)
    fids = []
    for sigma in (0, 10, 30, 60):
        fake = fidelity.extract(digits_ext, _noisy(train.images, sigma))
        fids.append(fidelity.fidelity_metrics(fake, real, digits_ext, metrics=["fid"])[0]["fid"])
    assert abs(fids[0]) < 1e-3
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert fids[1] > 1e-2


def test_matches_torch_fidelity_calculate_metrics_on_the_same_images(digits_ext, train, tmp_path):
    from torch_fidelity import calculate_metrics

    fake_images = _noisy(train.images[:300], 40, seed=1)
    ref = train.subset(slice(0, 600))
    kw = dict(isc_splits=5, kid_subsets=20, kid_subset_size=200, prc_neighborhood=3, seed=1234)
    real, info = fidelity.reference_features(ref, digits_ext, cache_dir=tmp_path)
    real_again, info_again = fidelity.reference_features(ref, digits_ext, cache_dir=tmp_path)
    assert not info["hit"] and info_again["hit"]
    assert fidelity.reference_key(train.subset(slice(1, 601)), digits_ext) != info["key"]  # keyed by content
    ours, _ = fidelity.fidelity_metrics(fidelity.extract(digits_ext, fake_images, batch_size=64), real_again,
                                        digits_ext, **kw)
    theirs = calculate_metrics(input1=fidelity.UInt8Images(fake_images), input2=fidelity.UInt8Images(ref.images),
                               isc=True, fid=True, kid=True, prc=True, feature_extractor="digits-wrn", cuda=False,
                               cache=False, verbose=False, save_cpu_ram=True, batch_size=100, isc_splits=5,
                               kid_subsets=20, kid_subset_size=200, prc_neighborhood=3, rng_seed=1234)
    pairs = {"is": "inception_score_mean", "is_std": "inception_score_std", "fid": "frechet_inception_distance",
             "kid": "kernel_inception_distance_mean", "kid_std": "kernel_inception_distance_std",
             "precision": "precision", "recall": "recall"}
    for ours_key, theirs_key in pairs.items():
        assert ours[ours_key] == pytest.approx(theirs[theirs_key], rel=1e-4, abs=1e-6), ours_key
    assert ours["fid"] > 1.0  # a real difference was measured, not two zeros


def test_inception_score_known_answers(tmp_path):
    from jembench.models import save_native
    from jembench.models.hybrid import HybridModel, ModelInfo
    from jembench.models.wrn import JEMNet

    confident = 100.0 * torch.eye(10).repeat(50, 1)  # balanced, certain: IS = exp(H(p(y))) = K
    assert fidelity.inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-9)
    net = JEMNet(10, 1, "none", 1, 10)
    with torch.no_grad():  # a classifier whose output is uniform whatever the input
        net.class_output.weight.zero_()
        net.class_output.bias.zero_()
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="none", dataset="digits", name="uniform")
    save_native(HybridModel(net, info), tmp_path / "uniform.pt")
    ext = fidelity.resolve_extractor(str(tmp_path / "uniform.pt"), "digits")
    feats = fidelity.extract(ext, get_dataset("digits", "test").images)
    values, _ = fidelity.fidelity_metrics(feats, None, ext, metrics=["is"])
    assert values["is"] == pytest.approx(1.0, abs=1e-12) and values["is_std"] == pytest.approx(0.0, abs=1e-12)


def test_quantize_is_the_real_image_map(tiny_jem, train):
    x01 = train.pixels01(0, 50)
    assert torch.equal(fidelity.quantize(tiny_jem, tiny_jem.to_model_space(x01)), train.images[:50])
    x = torch.tensor([-3.0, -1.0, -0.999, 0.0, 0.999, 1.0, 4.0]).view(1, 1, 1, 7)
    # pixels (x + 1) / 2, clamped, times 255, rounded half to even: 0.5 * 255 = 127.5 -> 128
    assert fidelity.quantize(tiny_jem, x).flatten().tolist() == [0, 0, 0, 128, 255, 255, 255]


def test_offline_without_inception_weights_fails_at_once_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(JembenchError, match="weights-inception-2015-12-05-6726825d.pth"):
        fidelity.resolve_extractor("inception", "digits", offline=True)
    with pytest.raises(JembenchError, match="no such file"):
        fidelity.resolve_extractor("inception", "digits", fid_weights=tmp_path / "absent.pth", offline=True)
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(JembenchError, match="not a plain tensor file"):  # at resolve time, before any sampling
        fidelity.resolve_extractor("inception", "digits", fid_weights=tmp_path / "text.pth", offline=True)
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(JembenchError, match=r"wrong.pth does not load \(RuntimeError: .*use weights-inception"):
        fidelity.resolve_extractor("inception", "digits", fid_weights=tmp_path / "wrong.pth", offline=True)


def test_unknown_extractor_and_wrong_image_shape_are_one_line_errors(digits_ext):
    with pytest.raises(JembenchError, match="neither a known extractor"):
        fidelity.resolve_extractor("no-such-extractor", "digits")
    with pytest.raises(JembenchError, match="takes images of shape"):
        fidelity.extract(digits_ext, torch.zeros(4, 3, 32, 32, dtype=torch.uint8))


def test_bundled_extractor_found_without_the_checkout_or_a_one_line_error(tmp_path, monkeypatch):
    """The extractor ships in the package; without it (a broken install) the lookup falls back to
    $JEMBENCH_EXTRACTORS, a copy passed as PATH keeps the bundled name, another file never reports as digits-wrn,
    and the error names options of both commands that take an extractor."""
    import shutil

    from jembench import feature_extractors as fx

    spec = fx.BUNDLED["digits"]
    original = fx.PACKAGE_DIR / spec.file
    monkeypatch.setattr(fx, "PACKAGE_DIR", tmp_path / "site-packages" / "jembench" / "bundled")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(fx.EXTRACTORS_ENV, raising=False)
    with pytest.raises(JembenchError, match=r"\$JEMBENCH_EXTRACTORS=DIR.*--feature-extractor PATH/digits-reference\S* "
                       r"\(run-all: --set gen.feature_extractor=PATH/digits-reference\S*\)"):
        fidelity.resolve_extractor("auto", "digits")
    copy = tmp_path / "extractors" / spec.file
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    monkeypatch.setenv(fx.EXTRACTORS_ENV, str(copy.parent))
    ext = fidelity.resolve_extractor("auto", "digits")
    assert (ext.name, ext.sha256, ext.path) == ("digits-wrn", spec.sha256, str(copy))
    monkeypatch.delenv(fx.EXTRACTORS_ENV)
    assert fidelity.resolve_extractor(str(copy), "digits").name == "digits-wrn"  # --feature-extractor PATH
    monkeypatch.setenv(fx.EXTRACTORS_ENV, str(tmp_path / "altered"))
    (tmp_path / "altered").mkdir()
    (tmp_path / "altered" / spec.file).write_bytes(copy.read_bytes()[:-1] + b"x")
    with pytest.raises(JembenchError, match="is not the bundled digits-wrn extractor"):
        fidelity.resolve_extractor("digits-wrn", "digits")
