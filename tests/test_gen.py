"""Generation protocols and the gen evaluator: PCD and conditional chains reproduce a known energy's moments,
seeds reproduce samples, buffer selection, outputs (results.json, pixel-exact grids, raw npz) and the CLI."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from jembench import wrap
from jembench.errors import JembenchError
from jembench.generation import GenProtocol, generate, make_protocol
from jembench.sampling import SGLDConfig

MU = torch.tensor([[0.2, -0.3], [-0.4, 0.5]])  # class means (model space, inside [-1, 1])
SD = torch.tensor([0.10, 0.15])  # per-coordinate std


class Gaussians(nn.Module):
    """logits[y] = log N(x; MU[y], diag(SD^2)) (+ const) for the first ``k`` classes: log p~(x, y) = f(x)[y] is
    class y's Gaussian; with k = 1, log p~(x) = logsumexp f(x) is MU[0]'s."""

    def __init__(self, k):
        super().__init__()
        self.mu = nn.Parameter(MU[:k].clone(), requires_grad=False)

    def forward(self, x):
        z = (x.flatten(1)[:, None, :] - self.mu[None]) / SD
        return -0.5 * (z ** 2).sum(-1)


def _langevin(steps, eps=2e-4):
    return SGLDConfig.langevin(eps, steps)  # temperature 1: the chains target p~ itself


def test_pcd_rounds_reproduce_a_known_energys_moments():
    model = wrap(Gaussians(1), n_classes=1, input_shape=(1, 1, 2), name="gauss")
    proto = GenProtocol(name="pcd", sampler=_langevin(50), pcd_rounds=60, pcd_batch=250, reinit_freq=0.0)
    s = generate(model, proto, 1000, seed=0, progress=False)
    x = s.x.flatten(1)
    assert s.observed["pcd/chains_never_advanced"] == 0
    assert torch.allclose(x.mean(0), MU[0], atol=0.02), x.mean(0)
    assert torch.allclose(x.std(0), SD, rtol=0.1), x.std(0)
    assert s.chain_steps == 60 * 250 * 50


def test_conditional_chains_sample_each_class_energy():
    model = wrap(Gaussians(2), n_classes=2, input_shape=(1, 1, 2), name="gauss")
    # 800 steps = 7 relaxation times SD^2 / step_size of the slower coordinate (400 left a visible pull to the init)
    proto = make_protocol("conditional", steps=800, step_size=2e-4, noise=math.sqrt(4e-4))
    s = generate(model, proto, 400, seed=0, progress=False)
    assert s.labels.bincount().tolist() == [200, 200]
    for k in range(2):
        xk = s.x.flatten(1)[s.labels == k]
        assert torch.allclose(xk.mean(0), MU[k], atol=0.03), (k, xk.mean(0))
        assert torch.allclose(xk.std(0), SD, rtol=0.15), (k, xk.std(0))


def test_same_seed_same_samples_other_seed_other_samples(tiny_jem):
    for name in ("sgld", "pcd", "jem++", "conditional"):
        proto = make_protocol(name, steps=2, pcd_rounds=2 if name == "pcd" else None, pcd_batch=8)
        train = None
        if proto.init == "gaussian":
            from jembench.data import get_dataset

            train = get_dataset("digits", "train")
        a = generate(tiny_jem, proto, 16, seed=3, batch_size=8, train_set=train, progress=False)
        b = generate(tiny_jem, proto, 16, seed=3, batch_size=8, train_set=train, progress=False)
        c = generate(tiny_jem, proto, 16, seed=4, batch_size=8, train_set=train, progress=False)
        assert torch.equal(a.x, b.x) and torch.equal(a.images, b.images), name
        assert not torch.equal(a.x, c.x), name


def test_make_protocol_presets_and_overrides():
    assert make_protocol("jem++", steps=7).sampler.outer_steps == 7
    p = make_protocol("pcd", steps=5, reinit_freq=0.0)
    assert (p.sampler.steps, p.pcd_rounds, p.reinit_freq) == (5, 100, 0.0)
    assert make_protocol("sgld", buffer_top=0.5).buffer_top is None  # only buffer protocols select
    assert make_protocol("sgld", pcd_rounds=5).pcd_rounds == 0  # an "sgld" column never holds PCD samples
    assert make_protocol("pcd", conditional=True, pcd_rounds=5).to_dict()["pcd_rounds"] == 5
    from jembench.evaluators.gen import gen

    with pytest.raises(JembenchError, match="--pcd-rounds set but no PCD protocol"):
        gen(["unused.pt"], protocol=["sgld", "conditional"], pcd_rounds=5)
    assert make_protocol("buffer-top", buffer_top=0.5).buffer_top == 0.5
    d = make_protocol("conditional").to_dict()
    assert d["conditional"] and d["target"].startswith("log p~(x, y)") and d["sampler"]["steps"] == 40
    with pytest.raises(JembenchError, match="presets"):
        make_protocol("nope")


def test_buffer_protocols_clamp_and_select_the_most_confident_per_class(tiny_jem):
    buf = torch.rand((60, 1, 8, 8), generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    tiny_jem.replay_buffer = buf
    all_ = generate(tiny_jem, make_protocol("buffer"), None, progress=False)
    assert len(all_.images) == 60 and all_.observed["buffer/fraction_outside_range"] > 0
    assert any("clamped" in w for w in all_.warnings)
    top = generate(tiny_jem, make_protocol("buffer-top", buffer_top=0.5), None, progress=False)
    with torch.no_grad():
        probs = tiny_jem(tiny_jem.to_model_space(all_.images.float() / 255)).softmax(-1)
    conf, pred = probs.max(-1)
    expected = []
    for c in pred.unique():
        idx = (pred == c).nonzero().squeeze(1)
        expected += idx[conf[idx].argsort(descending=True)[:math.ceil(0.5 * len(idx))]].tolist()
    assert torch.equal(top.images, all_.images[sorted(expected)])
    tiny_jem.replay_buffer = None
    with pytest.raises(JembenchError, match="no replay buffer"):
        generate(tiny_jem, make_protocol("buffer"), None, progress=False)


def test_gen_writes_results_grids_and_raw_samples(tiny_jem, tmp_path):
    from PIL import Image

    from jembench.evaluators.gen import gen
    from jembench.results import read_results

    out = tmp_path / "out"
    r = gen([tiny_jem], n=30, protocol=["sgld", "conditional"], steps=2, out_dir=out, cache_dir=tmp_path / "cache",
            save_raw=True, progress=False, kid_subsets=5)
    doc = read_results(out)
    assert [e["status"] for e in doc["evaluations"]] == ["ok", "ok"]
    ev = r.evaluations[1]
    for name in ("is/digits-wrn", "fid/digits-wrn/train", "kid/digits-wrn/train", "precision/digits-wrn/train",
                 "recall/digits-wrn/train", "is_real/digits-wrn/train", "cond_acc/model", "cond_acc/digits-wrn"):
        assert name in ev.metrics, name
    p = ev.protocol
    assert p["feature_extractor"]["name"] == "digits-wrn" and len(p["feature_extractor"]["sha256"]) == 64
    assert p["reference"]["n"] == 1437 and p["n"] == 30 and p["sampling"]["conditional"]
    assert p["metric_settings"]["kid_subset_size"] == 30
    assert set(ev.artifacts) == {"samples", "samples per class", "raw samples", "samples: chain energy",
                                 "raw chain trace"}
    samples = r.samples["tiny/conditional"]
    raw = np.load(out / ev.artifacts["raw samples"])
    assert raw["images"].dtype == np.uint8 and np.array_equal(raw["images"], samples.images.numpy())
    assert np.array_equal(raw["labels"], samples.labels.numpy())
    png = np.asarray(Image.open(out / ev.artifacts["samples"]))
    scale = 4  # 8x8 digits shown at 32 px
    first = png[scale:scale + 8 * scale:scale, scale:scale + 8 * scale:scale]
    assert np.array_equal(first, samples.images[0, 0].numpy())  # pixels as sampled, not rescaled
    assert r.evaluations[0].protocol_key != ev.protocol_key


def test_grid_keeps_pixel_values():
    from jembench.figures.samples import class_grid, grid

    imgs = torch.randint(100, 111, (5, 1, 3, 4), dtype=torch.uint8)  # a narrow range: min-max would stretch it
    g = grid(imgs, nrow=3)
    assert g.shape == (2 * 4 + 1, 3 * 5 + 1, 1)
    assert np.array_equal(g[1:4, 1:5, 0], imgs[0, 0].numpy()) and np.array_equal(g[5:8, 1:5, 0], imgs[3, 0].numpy())
    cg = class_grid(imgs, torch.tensor([1, 0, 1, 1, 0]), 2, per_class=2)
    assert np.array_equal(cg[1:4, 1:5, 0], imgs[1, 0].numpy()) and np.array_equal(cg[5:8, 6:10, 0], imgs[2, 0].numpy())


def test_cli_gen_json_and_one_line_errors(tiny_jem, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from jembench.cli import main
    from jembench.models import save_native

    ckpt = tmp_path / "tiny.pt"
    save_native(tiny_jem, ckpt)
    args = ["gen", str(ckpt), "--n", "20", "--steps", "1", "--kid-subsets", "5", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")]
    res = CliRunner().invoke(main, args + ["--json", "--metrics", "is,fid"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    assert set(doc["evaluations"][0]["metrics"]) >= {"is/digits-wrn", "fid/digits-wrn/train"}
    assert "kid/digits-wrn/train" not in doc["evaluations"][0]["metrics"]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    res = CliRunner().invoke(main, args + ["--feature-extractor", "inception", "--offline"])
    assert res.exit_code == 2 and "weights-inception-2015-12-05-6726825d.pth" in res.output
    res = CliRunner().invoke(main, args + ["--protocol", "buffer"])
    assert res.exit_code == 2 and "no replay buffer" in res.output


@pytest.mark.parametrize("name", ["sgld", "jem++", "conditional", "pcd"])
def test_fresh_chains_do_not_depend_on_the_batch_size(tiny_jem, name):
    """Chain i's init and noise are keyed by i (PCD: round r's draw j by (r, j), the buffer's draws from one
    generator): batch sizes 7 and 64 give the same samples."""
    proto = make_protocol(name, steps=2, pcd_rounds=3)
    train = None
    if proto.init == "gaussian":
        from jembench.data import get_dataset

        train = get_dataset("digits", "train")
    a, b = (generate(tiny_jem, proto, 20, seed=3, batch_size=bs, train_set=train, progress=False) for bs in (7, 64))
    assert torch.allclose(a.x, b.x, atol=1e-6) and torch.equal(a.images, b.images)
    assert a.protocol["rng"].startswith("per-sample v2")
