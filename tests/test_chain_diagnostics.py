"""Chain diagnostics: R-hat / ESS are ArviZ's on saved traces, known answers (identical vs. shifted chains), the
drift test fires on a drifting trace only, the recorder reads the sampler's own passes, and gen records it all."""

import logging
from pathlib import Path

import arviz
import numpy as np
import pytest
import torch

from jembench.sampling import ChainTrace, SGLDConfig, TraceRecorder, sgld_sample
from jembench.sampling.diagnostics import RHAT_LIMIT, diagnose, drift_test

ROOT = Path(__file__).resolve().parent.parent


def _trace(energy: np.ndarray, **kw) -> ChainTrace:
    return ChainTrace(torch.as_tensor(energy, dtype=torch.float32), torch.arange(len(energy)), **kw)


def _ar1(steps=400, chains=8, rho=0.7, seed=0):
    rng = np.random.default_rng(seed)
    e = np.zeros((steps, chains))
    for t in range(1, steps):
        e[t] = rho * e[t - 1] + rng.normal(size=chains)
    return e


def test_rhat_and_ess_are_arviz_on_a_saved_trace(tmp_path):
    trace = _trace(_ar1(), acceptance=torch.linspace(0.5, 0.7, 8))
    np.savez(tmp_path / "trace.npz", **trace.arrays())
    with np.load(tmp_path / "trace.npz") as z:
        saved = ChainTrace(torch.from_numpy(z["energy"]), torch.from_numpy(z["steps"]),
                           torch.from_numpy(z["acceptance"]))
    d = diagnose(saved)
    window = z_energy = saved.energy.double().numpy()[200:]
    assert d.metrics["chain/rhat"] == pytest.approx(float(arviz.rhat(window.T, method="rank")), rel=1e-12)
    assert d.metrics["chain/ess_bulk"] == pytest.approx(float(arviz.ess(z_energy.T, method="bulk")), rel=1e-12)
    assert d.metrics["chain/acceptance"] == pytest.approx(0.6)
    assert d.details["acceptance_min_max"] == pytest.approx([0.5, 0.7])
    assert d.metrics["chain/rhat"] < 1.05 and not d.warnings


def test_identical_chains_mix_shifted_chains_warn(caplog):
    one = np.random.default_rng(1).normal(size=(400, 1))
    same = diagnose(_trace(np.repeat(one, 6, 1)))
    assert abs(same.metrics["chain/rhat"] - 1) < 0.01 and not same.warnings
    with caplog.at_level(logging.WARNING, logger="jembench"):
        shifted = diagnose(_trace(np.random.default_rng(2).normal(size=(400, 6)) + np.arange(6) * 3.0), "m / sgld")
    assert shifted.metrics["chain/rhat"] > RHAT_LIMIT
    assert any("R-hat" in r.message and r.message.startswith("m / sgld") for r in caplog.records)


def test_drift_fires_on_a_drifting_trace_not_on_a_stationary_one(caplog):
    rng = np.random.default_rng(3)
    stationary = rng.normal(size=(200, 32))
    drifting = stationary - np.linspace(0, 4, 200)[:, None]  # energy still falling at the end
    with caplog.at_level(logging.WARNING, logger="jembench"):
        calm = diagnose(_trace(stationary))
        assert not caplog.records and not calm.details["drift"]["drifting"]
        moving = diagnose(_trace(drifting))
    assert moving.details["drift"]["drifting"] and moving.metrics["chain/drift_shift"] < 0
    assert any("still drifting" in r.message for r in caplog.records)
    # the test reads the last two quarters only: a trend that ended by the second half is no drift
    settled = np.concatenate([stationary[:100] + np.linspace(5, 0, 100)[:, None], stationary[100:]])
    assert not drift_test(settled)["drifting"]


def test_class_flips_and_the_energy_summary():
    pred = torch.zeros(10, 4, dtype=torch.long)
    pred[8:, 1] = 3  # chain 1 changes class in the second half; chain 2 only in the first
    pred[:3, 2] = 5
    d = diagnose(_trace(np.zeros((10, 4)), predicted=pred))
    assert d.metrics["chain/class_flip_fraction"] == 0.25
    assert d.summary["step"][-1] == 9 and d.summary["q50"] == [0.0] * 10


class Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_recorder_reads_the_samplers_own_passes():
    from jembench import wrap

    torch.manual_seed(0)
    model = wrap(Counting(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))), n_classes=10,
                 input_shape=(1, 8, 8))
    x0 = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cfg = SGLDConfig(steps=3)
    plain = sgld_sample(model, x0, cfg, torch.Generator().manual_seed(1))
    calls = model.net.calls
    rec = TraceRecorder(model)
    traced = sgld_sample(model, x0, cfg, torch.Generator().manual_seed(1), log_density=rec.log_density)
    assert model.net.calls - calls == calls == 3  # no extra forward pass
    assert torch.equal(plain, traced)
    trace = rec.trace()
    assert trace.energy.shape == (3, 5) and trace.steps.tolist() == [0, 1, 2]
    with torch.no_grad():
        assert torch.allclose(trace.energy[0], model.energy(x0))
        assert torch.equal(trace.predicted[0], model(x0).argmax(-1))
    y = torch.arange(5)
    cond = TraceRecorder(model)
    assert torch.equal(sgld_sample(model, x0, cfg, torch.Generator().manual_seed(1), y=y),
                       sgld_sample(model, x0, cfg, torch.Generator().manual_seed(1), y=y,
                                   log_density=cond.log_density))


def test_generation_traces_fresh_and_pcd_chains(tiny_jem):
    from jembench.generation import generate, make_protocol

    s = generate(tiny_jem, make_protocol("sgld", steps=6), 10, batch_size=4, progress=False)
    assert s.trace.energy.shape == (6, 10)
    p = generate(tiny_jem, make_protocol("pcd", steps=3, pcd_rounds=5, pcd_batch=4), 12, progress=False)
    assert p.trace.energy.shape == (5, 4) and p.trace.axis.startswith("PCD round")


def test_gen_on_the_digits_demo_records_diagnostics_and_the_ladder(tmp_path, caplog):
    from jembench.evaluators.gen import gen
    from jembench.results import read_results

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="jembench"):
        gen([ROOT / "checkpoints" / "jem-digits.pt"], n=24, protocol=["sgld", "buffer"], steps=8, ladder=(1, 2),
            metrics=("is", "fid"), out_dir=out, cache_dir=tmp_path / "cache", progress=False)
    doc = read_results(out)
    sgld, buffer = doc["evaluations"]
    for name in ("chain/rhat", "chain/ess_bulk", "chain/class_flip_fraction", "chain/energy_median_last",
                 "ladder/8/fid/digits-wrn/train", "ladder/16/is/digits-wrn", "ladder/16/energy_mean"):
        assert name in sgld["metrics"], name
    assert sgld["metrics"]["ladder/8/fid/digits-wrn/train"] == sgld["metrics"]["fid/digits-wrn/train"]
    assert sgld["protocol"]["chain_diagnostics"]["rhat"].startswith("rank-normalised split-R-hat")
    assert sgld["protocol"]["ladder"]["steps"] == [8, 16]
    q = sgld["provenance"]["chain_diagnostics"]["energy_quantiles"]
    assert q["step"] == list(range(8)) and len(q["q50"]) == 8
    assert (out / sgld["artifacts"]["samples: chain energy"]).is_file()
    assert buffer["protocol"]["chain_diagnostics"].startswith("none") and "ladder" not in buffer["protocol"]
    assert not any(k.startswith(("chain/", "ladder/")) for k in buffer["metrics"])
    assert any("sgld at 16 steps: energy R-hat" in w for w in sgld["warnings"])  # JEM's SGLD does not mix
    assert sgld["metrics"]["ladder/8/rhat"] == sgld["metrics"]["chain/rhat"]
    logged = [r.message for r in caplog.records]
    assert not any("at 8 steps" in m for m in logged)  # the main run is diagnosed (and warned about) once
    assert all(w in logged for w in sgld["warnings"] if "R-hat" in w or "drifting" in w)


def test_mh_and_mala_traces_are_their_own_energies_with_acceptance(tiny_jem):
    from jembench.generation import generate, make_protocol
    from jembench.sampling.diagnostics import diagnose

    s = generate(tiny_jem, make_protocol("mala", steps=6), 10, batch_size=4, progress=False)
    w = len(s.energy) - 6  # the warm-up rows are dropped
    assert s.trace.energy.shape == (6, 10) and torch.equal(s.trace.energy, s.energy[w:].float())
    assert torch.equal(s.trace.acceptance, s.acceptance) and s.trace.steps[0] == w + 1
    assert diagnose(s.trace).metrics["chain/acceptance"] == pytest.approx(float(s.acceptance.double().mean()))
    import dataclasses

    mh_pcd = dataclasses.replace(make_protocol("pcd"), sampler=make_protocol("mh", steps=3).sampler, pcd_rounds=4,
                                 pcd_batch=5)
    p = generate(tiny_jem, mh_pcd, 12, progress=False)
    assert p.trace.energy.shape == (4, 5) and p.trace.predicted is None
