"""The density evaluator end to end (bundled digits checkpoints through the CLI, a 3x32x32 model on CIFAR-format
files, run-all presets), its known answer on a Gaussian mixture, one-line errors, and the mh / mala gen protocols."""

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_data import no_md5, write_cifar10  # noqa: F401 - no_md5: fixture letting tiny fake files through md5
from test_mcmc_ais import model16

import jembench
from jembench.cli import main
from jembench.data.imageset import ImageSet
from jembench.evaluators.density import DensitySettings, dequantised, log_bin_width
from jembench.generation import generate, make_protocol
from jembench.models import save_native
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet
from jembench.presets import get_preset

CKPTS = Path(__file__).resolve().parent.parent / "checkpoints"
FAST = ["--n", "12", "--chains", "6", "--distributions", "8", "--reverse-chains", "4", "--dsm-sigmas", "0.1"]


def test_density_command_on_the_bundled_digits_checkpoints(tmp_path):
    r = CliRunner().invoke(main, ["density", str(CKPTS / "jem-digits.pt"), str(CKPTS / "baseline-digits.pt"), *FAST,
                                  "--out-dir", str(tmp_path), "--save-raw"])
    assert r.exit_code == 0, r.output
    assert "ais/log_z" in r.output and "sm/ssm" in r.output
    evs = json.loads((tmp_path / "results.json").read_text())["evaluations"]
    assert [e["checkpoint"]["name"] for e in evs] == ["jem-digits", "baseline-digits"]
    for ev in evs:
        m, p = ev["metrics"], ev["protocol"]
        assert ev["intervals"]["ais/log_z"] == [m["ais/log_z"], m["ais/log_z_upper"]]
        assert m["ais/log_z_gap"] == pytest.approx(m["ais/log_z_upper"] - m["ais/log_z"])
        assert m["ais/log_px"] == pytest.approx(m["log_p_tilde"] - m["ais/log_z"])
        d = 64  # bpd = -(log p(x) + d log(2/256)) / (d ln 2)
        assert m["ais/bits_per_dim"] == pytest.approx(-(m["ais/log_px"] + d * math.log(2 / 256)) / (d * math.log(2)))
        assert 1 <= m["ais/ess"] <= 6 and set(m) >= {"sm/dsm/0.1", "sm/ssm"}
        assert (p["n"], p["ais"]["chains"], p["ais"]["distributions"], p["ais"]["reverse_chains"]) == (12, 6, 8, 4)
        assert p["ais"]["temperature"] == 1.0 and p["ais"]["log_z0"] == pytest.approx(64 * math.log(2))
        assert "only as good as the data's closeness" in p["reading"]
        assert [row["quantity"] for row in ev["rows"]] == ["log Z", "mean log p(x)", "bits/dim"]
        raw = dict(__import__("numpy").load(tmp_path / ev["artifacts"]["AIS weights and energy traces"]))
        assert raw["forward_log_w"].shape == (6,) and raw["forward_energy"].shape == (8, 6)
        assert raw["reverse_energy"].shape == (8, 4)


def test_same_seed_same_numbers_other_seed_other_numbers():
    ck = str(CKPTS / "jem-digits.pt")
    kw = dict(n=8, chains=4, distributions=5, reverse_chains=2, parts=("ais",), progress=False)
    a, b = (jembench.density(ck, seed=0, **kw).evaluations[0].metrics for _ in range(2))
    c = jembench.density(ck, seed=1, **kw).evaluations[0].metrics
    assert a == b and a["ais/log_z"] != c["ais/log_z"]


@pytest.mark.usefixtures("no_md5")
def test_density_on_a_3x32x32_model_and_cifar_format_files(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", n=5)
    monkeypatch.setenv("JEMBENCH_DATA", str(tmp_path / "data"))
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=3,
                     image_size=(32, 32), depth=10, width=1, norm="batch", dataset="cifar10", name="c3",
                     mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    model = HybridModel(JEMNet(10, 1, "batch", 3, 10), info)
    save_native(model, tmp_path / "c3.pt")
    res = jembench.density(str(tmp_path / "c3.pt"), chains=3, distributions=4, reverse_chains=2, dsm_sigmas=(0.1,),
                           batch_size=2, out_dir=tmp_path / "out", progress=False)  # 3 batches, the last forward only
    ev = res.evaluations[0]
    assert ev.protocol["n"] == 5 and ev.protocol["dataset"] == "cifar10"
    d = 3 * 32 * 32  # per-channel box and bins: pixel 0..1 maps to (-mean/std, (1-mean)/std)
    assert ev.protocol["ais"]["log_z0"] == pytest.approx(32 * 32 * sum(math.log(1 / s) for s in info.std), rel=1e-6)
    assert log_bin_width(model) == pytest.approx(sum(math.log(1 / (256 * s)) for s in info.std) / 3)
    assert math.isfinite(ev.metrics["ais/bits_per_dim"]) and ev.protocol["ais"]["dims"] == d
    x = dequantised(model, ImageSet("t", "test", torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), 0)
    lo = torch.tensor([-m / s for m, s in zip(info.mean, info.std)]).view(1, 3, 1, 1)
    assert (x >= lo).all() and (x < lo + 1 / (256 * torch.tensor(info.std).view(1, 3, 1, 1)) + 1e-6).all()


def test_the_evaluator_brackets_a_known_log_z():
    """The 16-D mixture of tests/test_mcmc_ais.py as a checkpoint: its held-out images are mixture samples."""
    model = model16()
    gen = torch.Generator().manual_seed(0)
    x = model.net.sample(128, gen).view(-1, 1, 4, 4)  # 128 held-out images, all starting reverse chains
    images = ((x + 1) / 2 * 256).floor().clamp(0, 255).to(torch.uint8)  # dequantised again: same law up to 1/256
    data = ImageSet("mix", "test", images)
    res = jembench.density(model, data, chains=128, distributions=300, reverse_chains=128, step_size=0.01,
                           parts=("ais",), progress=False)
    m = res.evaluations[0].metrics
    truth = model.net.log_z()  # 128 chains a side at K = 300: seeds 0-5 put each side within 0.32 nats of it
    assert m["ais/log_z"] - 0.3 <= truth <= m["ais/log_z_upper"] + 0.3, (m, truth)
    assert m["ais/log_z_gap"] < 1.5


@pytest.mark.parametrize("args, message", [
    (["--chains", "0"], "--chains must be >= 1, got 0"),
    (["--parts", "ais,nope"], "unknown part 'nope'"),
    (["--target-accept", "1.5"], "--target-accept must be"),
    (["--parts", "sm", "--dsm-sigmas", "", "--ssm-projections", "0"], "asks for score matching but"),
    (["--dsm-sigmas", "0"], "--dsm-sigmas must be > 0"),
])
def test_bad_settings_are_one_line_errors_before_loading(args, message, tmp_path):
    # a loadable checkpoint: the preflight reports every problem at once (an absent file would be a second line)
    r = CliRunner().invoke(main, ["density", "checkpoints/jem-digits.pt", *args, "--out-dir", str(tmp_path / "o")])
    assert r.exit_code != 0 and message in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_presets_carry_density_small_in_quick_and_full_in_paper():
    quick, paper = get_preset("quick").settings("density"), get_preset("paper").settings("density")
    assert isinstance(quick, DensitySettings) and quick.distributions < paper.distributions
    assert quick.chains < paper.chains and paper.distributions == 10000


@pytest.mark.parametrize("name, step", [("mh", 0.05), ("mala", 0.01)])
def test_mh_and_mala_gen_protocols(name, step):
    model = model16()
    proto = make_protocol(name, steps=150, step_size=step, temperature=1.0, warmup=30)
    s = generate(model, proto, 300, seed=0, batch_size=150, progress=False)
    assert s.protocol["sampler"]["sampler"] == name and s.protocol["sampler"]["temperature"] == 1.0
    assert s.acceptance.shape == (300,) and s.energy.shape == (180, 300)
    assert 0.1 < s.observed["mcmc/acceptance_mean"] < 0.9 and s.chain_steps == 300 * 180
    assert abs(float(s.x.std()) - 0.22) < 0.03  # the mixture's std (the uniform start's is 0.58)
    assert float(s.energy[-1].mean()) < float(s.energy[0].mean())


def test_gen_command_with_the_mala_protocol(tmp_path):
    r = CliRunner().invoke(main, ["gen", str(CKPTS / "jem-digits.pt"), "--protocol", "mala", "--n", "16", "--steps",
                                  "3", "--warmup", "2", "--temperature", "2", "--metrics", "is",
                                  "--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (ev,) = json.loads((tmp_path / "results.json").read_text())["evaluations"]
    sampler = ev["protocol"]["sampling"]["sampler"]
    assert (sampler["sampler"], sampler["steps"], sampler["warmup"], sampler["temperature"]) == ("mala", 3, 2, 2.0)
    assert 0 <= ev["provenance"]["observed"]["mcmc/acceptance_mean"] <= 1


@pytest.mark.parametrize("name", ["mh", "mala"])
def test_mh_and_mala_chains_do_not_depend_on_the_batch_size_without_warm_up(name):
    """Each chain's draws are keyed by its index (jembench.rng); only the warm-up's shared step would differ."""
    model = model16()
    proto = make_protocol(name, steps=5, warmup=0)
    a, b = (generate(model, proto, 40, seed=0, batch_size=bs, progress=False) for bs in (40, 16))
    assert torch.equal(a.x, b.x) and torch.equal(a.acceptance, b.acceptance)


def test_density_runs_in_float32_whatever_the_model_precision():
    """run-all loads models at --precision; density's passes stay float32 and the model's setting is restored."""
    from jembench.evaluators.base import Context, SharedSettings
    from jembench.evaluators.density import run

    lin = torch.nn.Linear(16, 16, bias=False)
    lin.weight.data = torch.eye(16) * 1.001  # a layer autocast runs in bf16: its output is rounded there
    from test_mcmc_ais import mixture16
    model = jembench.wrap(torch.nn.Sequential(torch.nn.Flatten(), lin, mixture16()), n_classes=2,
                          input_shape=(1, 4, 4))
    data = ImageSet("mix", "test", torch.full((4, 1, 4, 4), 128, dtype=torch.uint8))
    s, shared = DensitySettings(chains=4, distributions=5, reverse_chains=2, dsm_sigmas=(0.1,)), SharedSettings(
        dataset=data, batch_size=8)
    want = run([model], s, shared, Context("cpu", None, progress=False))[0].metrics
    model.precision = "bf16"
    (ev,) = run([model], s, shared, Context("cpu", None, progress=False))
    assert ev.metrics == want and model.precision == "bf16" and ev.protocol["precision"].startswith("fp32")


@pytest.mark.parametrize("model", ["mixture16", "jem-digits"])
def test_density_numbers_do_not_depend_on_the_batch_size(model):
    """Every chain's start and noise and every image's score-matching noise are keyed by index, and AIS batches
    advance in lockstep with the step adapted on all chains of a group: batch sizes 7 and 64 give the same numbers
    (bit-identical where the model's pass is: the mixture; to float rounding through the digits network)."""
    kw = dict(chains=10, distributions=6, reverse_chains=9, dsm_sigmas=(0.1,), ssm_projections=2, progress=False)
    if model == "mixture16":
        gen = torch.Generator().manual_seed(0)
        images = ((model16().net.sample(20, gen).view(-1, 1, 4, 4) + 1) * 128).floor().clamp(0, 255).to(torch.uint8)
        model, kw = model16(), {**kw, "dataset": ImageSet("mix", "test", images)}
    else:
        model, kw = str(CKPTS / "jem-digits.pt"), {**kw, "n": 20}
    a, b = (jembench.density(model, batch_size=bs, **kw).evaluations[0] for bs in (7, 64))
    if kw.get("dataset") is not None:
        assert a.metrics == b.metrics
    else:
        assert a.metrics == pytest.approx(b.metrics, rel=1e-4, abs=1e-5)
    assert a.protocol["ais"]["rng"].startswith("per-sample v2") and "sigma" in a.protocol["score_matching"]["rng"]
