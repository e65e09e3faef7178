"""`jembench ood` and `jembench.ood` end to end on a tiny native checkpoint, digits vs synthetic OOD sets."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_auc_score
from test_data import no_md5, write_cifar10  # noqa: F401 - no_md5: fixture letting tiny fake files through md5 checks

from jembench.cli import main
from jembench.data import get_dataset
from jembench.data.ood_sets import load_ood_set
from jembench.errors import JembenchError
from jembench.evaluators.clf import clf
from jembench.evaluators.ood import expand_out, ood
from jembench.forward import ForwardCache
from jembench.models import save_native
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet

FAST = ["--n", "30", "--bootstrap", "20", "--device", "cpu"]


@pytest.fixture
def ckpt(tiny_jem, tmp_path):
    path = tmp_path / "tiny.pt"
    save_native(tiny_jem, path)
    return str(path)


def _run(args, **kw):
    result = CliRunner().invoke(main, ["ood", *args], catch_exceptions=False, **kw)
    return result


def test_cli_end_to_end(ckpt, tmp_path):
    out = tmp_path / "out"
    r = _run([ckpt, *FAST, "--score", "logp,gradnorm", "--sigma", "0.05", "--save-raw", "--out-dir", str(out),
              "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc == json.loads((out / "results.json").read_text())
    (ev,) = doc["evaluations"]
    assert ev["evaluator"] == "ood" and ev["status"] == "ok"
    sets = ["noise", "uniform", "constant", "interp", "rotated"]  # the digits preset
    assert [(row["score"], row["out"]) for row in ev["rows"]] == [(s, o) for s in ("logp", "gradnorm") for o in sets]
    for row in ev["rows"]:
        assert 0 <= row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"] <= 1
        assert (row["n_in"], row["n_out"]) == (30, 30)
        assert ev["metrics"][f"auroc/{row['score']}/{row['out']}"] == row["auroc"]
        assert ev["metrics"][f"fpr95_ood_caught/{row['score']}/{row['out']}"] == row["fpr95_ood_caught"]
    p = ev["protocol"]
    assert p["test_sigma"] == 0.05 and p["noise_seed"] == 0 and p["n_in"] == 30 and p["in_dataset"] == "digits"
    assert "average precision" in p["aupr_method"] and set(p["fpr_conventions"]) == {"fpr95_in_kept",
                                                                                   "fpr95_ood_caught"}
    assert [s["name"] for s in p["out_sets"]] == sets and all(s["preprocessing"] == "none" for s in p["out_sets"])
    assert p["score_convention"].startswith("higher = more in-distribution")
    for label in ("hist/logp", "roc/logp", "hist/gradnorm", "roc/gradnorm", "raw_scores"):
        assert (out / ev["artifacts"][label]).is_file()
    raw = np.load(out / ev["artifacts"]["raw_scores"])
    assert list(raw["out_names"]) == sets and raw["logp.in"].shape == (30,) and raw["gradnorm.out4"].shape == (30,)
    assert (raw["gradnorm.in"] <= 0).all()
    for row in ev["rows"]:  # the saved per-sample scores give back the reported metrics
        a, b = raw[f"{row['score']}.in"], raw[f"{row['score']}.out{sets.index(row['out'])}"]
        y, x = np.r_[np.ones(a.size), np.zeros(b.size)], np.r_[a, b]
        assert row["auroc"] == pytest.approx(roc_auc_score(y, x), abs=1e-12)
        assert row["aupr_in"] == pytest.approx(average_precision_score(y, x), abs=1e-12)
        assert row["aupr_out"] == pytest.approx(average_precision_score(1 - y, -x), abs=1e-12)
        assert row["fpr95_in_kept"] == np.mean(b >= np.sort(a)[int(0.05 * a.size)])  # 29 of 30 in kept
    assert not list(out.rglob("*.tmp"))


def test_api_one_forward_pass_per_dataset_and_sigma_on_both_sides(tiny_jem):
    cache, bs = ForwardCache(), 16
    clf(tiny_jem, "digits", sigma=0.1, seed=3, n=40, batch_size=bs, cache=cache)
    assert cache.model_calls == 3  # the accuracy pass over the in-distribution set, which ood reuses
    r = ood(tiny_jem, "digits", ["noise", "interp"], scores=["logp", "msp", "maxlogit", "energy-T"], sigma=0.1,
            seed=3, n=40, bootstrap=0, batch_size=bs, cache=cache, progress=False)
    assert cache.model_calls == 3 * 3  # 3 sets x ceil(40 / 16) batches, whatever the number of scores
    ood(tiny_jem, "digits", "noise", scores="msp", sigma=0.1, seed=3, n=40, bootstrap=0, batch_size=bs, cache=cache,
        progress=False)
    assert cache.model_calls == 9  # run-all style reuse: nothing recomputed
    in_set = get_dataset("digits", "test").first(40)
    noise = load_ood_set("noise", in_set, (1, 8, 8), seed=3, n=40)
    for imageset, got in ((in_set, r.scores[0]["in"]["logp"]), (noise, r.scores[0]["out"]["noise"]["logp"])):
        clean = ForwardCache().get(tiny_jem, imageset, sigma=0.0, progress=False).log_px.numpy()
        noisy = ForwardCache().get(tiny_jem, imageset, sigma=0.1, seed=3, progress=False).log_px.numpy()
        np.testing.assert_allclose(got, noisy, rtol=1e-6)
        assert not np.allclose(got, clean)
    assert r.to_dict()["evaluations"][0]["intervals"] == {}
    assert len(r.table()) == 8


def test_same_command_twice_same_numbers(tiny_jem):
    kw = dict(scores=["logp", "gradnorm"], sigma=0.03, n=30, bootstrap=30, progress=False)
    a = ood(tiny_jem, "digits", ["uniform", "rotated"], **kw).evaluations[0]
    b = ood(tiny_jem, "digits", ["uniform", "rotated"], **kw).evaluations[0]
    assert a.metrics == b.metrics and a.intervals == b.intervals and a.protocol_key == b.protocol_key


def test_jembench_ckpt_env(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CKPT", ckpt)
    r = _run(["--in", "digits", "--out", "noise", "--score", "msp", "--no-figures", *FAST,
              "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "msp" in r.stdout and "noise" in r.stdout
    # the design card's command parses as written; here it stops with one line because CIFAR-10 is absent
    r = _run(["--in", "cifar10", "--out", "svhn", "--out-dir", str(tmp_path / "c")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("jembench: error:") for e in err)  # every absent set, one line each
    assert "cifar-10-batches-py/{data_batch_1" in err[0] and "'svhn' not found" in err[1]
    assert "fetch it with: jembench datasets --download cifar10 --data-dir" in err[0]


def _write_svhn_test(root, n=5):
    """SVHN's test_32x32.mat: X [32, 32, 3, N] uint8, y [N, 1] with digit 0 stored as 10."""
    import scipy.io

    rng = np.random.default_rng(2)
    scipy.io.savemat(root / "test_32x32.mat", {"X": rng.integers(0, 120, (32, 32, 3, n), dtype=np.uint8),
                                               "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})


@pytest.mark.usefixtures("no_md5")
def test_design_card_command_on_cifar_files(ckpt, tmp_path, monkeypatch):
    """`JEMBENCH_CKPT=c.pt jembench ood --in cifar10 --out svhn`, exactly as written, on tiny CIFAR-10 and SVHN files
    in torchvision's formats; then the same SVHN file brought to a digits model's 1x8x8, the rule recorded."""
    data = tmp_path / "data"
    write_cifar10(data, n=6)
    _write_svhn_test(data)
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=3,
                     image_size=(32, 32), depth=10, width=1, norm="none", dataset="cifar10", name="c3")
    save_native(HybridModel(JEMNet(10, 1, "none", 3, 10), info), tmp_path / "c3.pt")
    monkeypatch.setenv("JEMBENCH_CKPT", str(tmp_path / "c3.pt"))
    monkeypatch.setenv("JEMBENCH_DATA", str(data))
    monkeypatch.chdir(tmp_path)
    r = _run(["--in", "cifar10", "--out", "svhn"])
    assert r.exit_code == 0, r.output
    (ev,) = json.loads((tmp_path / "reports" / "ood" / "results.json").read_text())["evaluations"]
    assert [(row["score"], row["out"], row["n_in"], row["n_out"]) for row in ev["rows"]] == [
        (s, "svhn", 6, 5) for s in ("logp", "msp", "maxlogit", "energy-T", "gradnorm")]
    p = ev["protocol"]
    assert (p["in_dataset"], p["n_in"], p["bootstrap"]["resamples"]) == ("cifar10", 6, 1000)
    assert [(s["name"], s["n"], s["preprocessing"]) for s in p["out_sets"]] == [("svhn", 5, "none")]
    assert all((tmp_path / "reports" / "ood" / f).is_file() for f in ev["artifacts"].values())

    r = _run([ckpt, "--out", "svhn", "--score", "msp", "--bootstrap", "0", "--no-figures", "--out-dir", "d", "--json"])
    assert r.exit_code == 0, r.output
    (svhn,) = json.loads(r.stdout)["evaluations"][0]["protocol"]["out_sets"]
    assert svhn["n"] == 5 and "RGB -> gray" in svhn["preprocessing"] and "32x32 -> 8x8" in svhn["preprocessing"]


def test_cache_dir_is_reused_by_a_second_command(ckpt, tmp_path, monkeypatch):
    args = [ckpt, "--out", "noise", "--out", "interp", "--score", "msp,energy-T", "--no-figures", *FAST,
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    first = _run([*args, "--out-dir", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert len(list((tmp_path / "cache").iterdir())) == 3  # one forward pass per set: digits, noise, interp

    def no_forward(*a, **k):
        raise AssertionError("the model was called although every pass is in --cache-dir")

    monkeypatch.setattr(HybridModel, "logits_and_log_px", no_forward)
    second = _run([*args, "--out-dir", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    a, b = (json.loads(r.stdout)["evaluations"][0] for r in (first, second))
    assert a["metrics"] == b["metrics"] and len(a["metrics"]) == 2 * 2 * 6


@pytest.mark.parametrize("args,message", [
    (["--score", "px"], "unknown OOD score 'px'"),
    (["--out", "no-such-set"], "no-such-set"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--in", "nope"], "nope"),
])
def test_bad_input_one_line(ckpt, tmp_path, args, message):
    r = _run([ckpt, *args, *FAST, "--out-dir", str(tmp_path)])
    assert r.exit_code == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jembench: error:") and message in err[0], r.stderr


def test_no_checkpoint(monkeypatch, tmp_path):
    monkeypatch.delenv("JEMBENCH_CKPT", raising=False)
    r = _run(["--out-dir", str(tmp_path)])
    assert r.exit_code == 2 and "JEMBENCH_CKPT" in r.stderr


def test_api_errors_and_presets(tiny_jem):
    with pytest.raises(JembenchError, match="save_raw needs out_dir"):
        ood(tiny_jem, save_raw=True)
    assert expand_out(None, "digits") == ["noise", "uniform", "constant", "interp", "rotated"]
    assert expand_out(None, "cifar10") == ["svhn", "cifar100", "celeba", "interp"]
    assert expand_out(["jem,noise", "svhn", "npz:/a,b.npz"], "cifar10") == ["svhn", "cifar100", "celeba", "interp",
                                                                             "noise", "npz:/a,b.npz"]
    assert torch.get_num_threads() == 1
