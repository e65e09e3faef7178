"""Products of experts: E(x, y) = sum_i w_i E_i(x, y) (logits add), poe:A@0.5,A@0.5 is A in every metric, experts
that read different inputs are refused with one line, and the weights are recorded in results.json."""

import json

import pytest
import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.errors import CheckpointError
from jembench.models import save_native
from jembench.models.compose import parse_spec
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet


def _save(tmp_path, name, seed, channels=1, classes=10, head="ccf"):
    torch.manual_seed(seed)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=classes,
                     in_channels=channels, image_size=(8, 8), depth=10, width=1, norm="none", dataset="digits"
                     if channels == 1 and classes == 10 else None, name=name, head=head)
    path = tmp_path / f"{name}.pt"
    save_native(HybridModel(JEMNet(10, 1, "none", channels, classes), info), path)
    return str(path)


@pytest.fixture
def pair(tmp_path):
    return _save(tmp_path, "a", 0), _save(tmp_path, "b", 1)


def test_logits_add_with_their_weights_and_half_plus_half_is_exact(pair):
    a, b = pair
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ma, mb = jembench.load(a), jembench.load(b)
    with torch.no_grad():
        poe = jembench.load(f"poe:{a}@1,{b}@0.5")
        assert torch.allclose(poe(x), ma(x) + 0.5 * mb(x), atol=1e-6)
        assert torch.allclose(poe.energy(x), -(ma(x) + 0.5 * mb(x)).logsumexp(-1), atol=1e-6)
        assert torch.equal(jembench.load(f"poe:{a}@0.5,{a}@0.5")(x), ma(x))  # logits exactly
        assert torch.allclose(jembench.compose([ma, mb])(x), ma(x) + mb(x), atol=1e-6)  # default weights 1
    assert [e["weight"] for e in poe.info.experts] == [1.0, 0.5] and poe.info.name == "poe(a@1,b@0.5)"
    from jembench.forward import model_fingerprint  # the shared forward cache must tell the weights apart

    assert model_fingerprint(poe) != model_fingerprint(jembench.load(f"poe:{a}@0.5,{b}@1"))


def test_an_energy_head_expert_contributes_its_joint_log_density(tmp_path):
    a, f = _save(tmp_path, "a", 0), _save(tmp_path, "f", 2, head="f")
    ma, mf = jembench.load(a), jembench.load(f)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = torch.arange(4)
    with torch.no_grad():
        poe = jembench.compose([ma, mf], [1.0, 2.0])
        assert torch.allclose(poe.log_pxy(x, y), ma.log_pxy(x, y) + 2 * mf.log_pxy(x, y), atol=1e-5)


def test_half_plus_half_equals_the_expert_in_every_metric(pair, tmp_path):
    a, _ = pair
    same = f"poe:{a}@0.5,{a}@0.5"
    kw = {"n": 40, "device": "cpu", "progress": False}
    for fn, extra in ((jembench.clf, {}), (jembench.calib, {"bootstrap": 20}),
                      (jembench.ood, {"out": ("noise",), "bootstrap": 20, "figures": False})):
        r = fn([a, same], **kw, **extra)
        one, two = r.evaluations
        assert one.metrics == two.metrics and one.intervals == two.intervals, fn
        assert one.protocol_key == two.protocol_key


def test_weights_are_recorded_in_results_json(pair, tmp_path):
    a, b = pair
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["clf", f"poe:{a}@1,{b}@0.5", "--n", "20", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    ckpt = json.loads((out / "results.json").read_text())["evaluations"][0]["checkpoint"]
    assert ckpt["family"] == "poe" and ckpt["path"] == f"poe:{a}@1,{b}@0.5" and len(ckpt["sha256"]) == 64
    assert [(e["path"], e["weight"]) for e in ckpt["experts"]] == [(a, 1.0), (b, 0.5)]
    assert all(len(e["sha256"]) == 64 for e in ckpt["experts"])


def test_experts_that_read_other_inputs_are_refused_with_one_line(pair, tmp_path):
    a, _ = pair
    rgb = _save(tmp_path, "rgb", 3, channels=3)
    many = _save(tmp_path, "many", 4, classes=100)
    with pytest.raises(CheckpointError, match="experts disagree on in channels"):
        jembench.load(f"poe:{a},{rgb}")
    with pytest.raises(CheckpointError, match="experts disagree on n classes"):
        jembench.load(f"poe:{a},{many}")
    for spec, why in ((f"poe:{a},{rgb}", "disagree"), (f"poe:{a}@x", "not a number"), ("poe:", "names no expert"),
                      (f"poe:{a}@0", "> 0"), (f"poe:{a},{tmp_path}/none.pt", "not found")):
        res = CliRunner().invoke(main, ["clf", spec, "--n", "8", "--out-dir", str(tmp_path / "o")])
        assert res.exit_code != 0 and why in res.output, (spec, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_parse_spec():
    assert parse_spec("poe:A.pt@1,B.pt@0.5") == (["A.pt", "B.pt"], [1.0, 0.5])
    assert parse_spec("poe:dir@v2/A.pt@1, B.pt") == (["dir@v2/A.pt", "B.pt"], [1.0, 1.0])  # the last @ weighs
