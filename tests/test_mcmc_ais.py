"""MH, MALA and AIS against known answers: a Gaussian mixture well inside the box whose log Z is closed form
(16 dims), invariance of a 2-D mixture over long chains, MALA acceptance -> 1 as the step -> 0, box rejection,
and DSM / SSM against their closed forms on a Gaussian."""

import math

import pytest
import torch
import torch.nn as nn

from jembench import wrap
from jembench.metrics.density import (bits_per_dim, dsm_loss, effective_sample_size, log_z_forward, log_z_reverse,
                                      model_score, ssm_loss)
from jembench.runtime import generator
from jembench.sampling.ais import ais, log_box_volume, sigmoid_schedule
from jembench.sampling.mcmc import MALAConfig, MHConfig, input_box, mcmc_sample

PI = torch.tensor([0.3, 0.7])
S = 0.2  # component std: means at +-0.1 are 4.5 std from the box edge, so the box holds all but ~1e-4 of the mass
D = 16


class Mixture(nn.Module):
    """logits_k = log pi_k - ||x - mu_k||^2 / (2 s^2): p~(x) = sum_k pi_k exp(-||x - mu_k||^2 / (2 s^2)), so
    Z = (2 pi s^2)^(d/2) sum_k pi_k = (2 pi s^2)^(d/2) (the box truncation is negligible)."""

    def __init__(self, mu: torch.Tensor, pi: torch.Tensor, s: float):
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("log_pi", pi.log())
        self.s = s

    def forward(self, x):
        return self.log_pi - (x.flatten(1)[:, None] - self.mu).pow(2).sum(-1) / (2 * self.s ** 2)

    def log_z(self) -> float:
        return self.mu.shape[1] / 2 * math.log(2 * math.pi * self.s ** 2) + float(self.log_pi.exp().sum().log())

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=gen)
        return self.mu[k] + self.s * torch.randn(n, self.mu.shape[1], generator=gen)


def mixture16():
    mu = torch.stack([torch.full((D,), -0.1), torch.full((D,), 0.1)])
    return Mixture(mu, PI, S)


def model16():
    return wrap(mixture16(), n_classes=2, input_shape=(1, 4, 4), name="mixture16")


def log_p(model):
    return lambda x, y=None: model.log_px(x)


def run_ais(model, k, chains, seed, reverse=False, step=0.01):
    gen = generator(seed)
    box = input_box(model.info)
    betas = sigmoid_schedule(k)
    if reverse:
        x0 = model.net.sample(chains, gen).view(chains, 1, 4, 4)  # exact samples: a true upper side
        betas = betas.flip(0)
    else:
        x0 = torch.rand(chains, 1, 4, 4, generator=gen) * 2 - 1
    res = ais(model, x0, betas, gen, step_size=step, box=box, log_density=log_p(model))
    lz0 = log_box_volume(*box, (1, 4, 4))
    assert lz0 == pytest.approx(D * math.log(2))
    return (log_z_reverse if reverse else log_z_forward)(res.log_w, lz0), res


def test_ais_bracket_contains_the_closed_form_log_z_and_narrows_with_more_distributions():
    model = model16()
    truth = model.net.log_z()
    widths = []
    for k in (30, 300):
        lo, res = run_ais(model, k, 128, seed=1)
        hi, _ = run_ais(model, k, 128, seed=2, reverse=True)
        assert lo - 0.1 <= truth <= hi + 0.1, (k, lo, truth, hi)
        widths.append(hi - lo)
        assert 1 <= effective_sample_size(res.log_w) <= 128
        assert res.energy.shape == (k, 128) and res.accept_by_step.shape == (k,)
    assert widths[1] < 0.5 * widths[0], widths
    assert widths[1] < 1.0, widths  # both sides within a nat of the truth at K = 300
    assert 0.2 < res.acceptance.mean() < 0.95  # the step adapted toward 0.574


def _moments_ok(x, model, atol_mean=0.02, atol_var=0.01):
    x = x.flatten(1).double()
    mu, pi, s = model.net.mu.double(), model.net.log_pi.exp().double(), model.net.s
    mean = (pi[:, None] * mu).sum(0)
    var = s ** 2 + (pi[:, None] * mu ** 2).sum(0) - mean ** 2
    assert torch.allclose(x.mean(0), mean, atol=atol_mean), (x.mean(0), mean)
    assert torch.allclose(x.var(0), var, atol=atol_var), (x.var(0), var)


@pytest.mark.parametrize("cfg", [MHConfig(steps=300, step_size=0.05, warmup=100),
                                 MALAConfig(steps=150, step_size=0.01, warmup=50)])
def test_mh_and_mala_from_uniform_match_the_16d_mixture_moments(cfg):
    model = model16()
    gen = generator(0)
    x0 = torch.rand(1000, 1, 4, 4, generator=gen) * 2 - 1
    res = mcmc_sample(model, x0, cfg, gen, value_range=input_box(model.info))
    _moments_ok(res.x, model)
    assert res.energy.shape == (cfg.warmup + cfg.steps, 1000) and res.acceptance.shape == (1000,)
    assert abs(float(res.acceptance.mean()) - cfg.target_accept) < 0.15  # warm-up adapted the step
    side = (res.x.flatten(1).mean(1) > 0).float().mean()  # share of chains near the heavier mode
    assert abs(float(side) - 0.7) < 0.06


@pytest.mark.parametrize("cfg", [MHConfig(steps=400, step_size=0.3), MALAConfig(steps=400, step_size=0.02)])
def test_mh_and_mala_leave_a_2d_mixture_invariant(cfg):
    mix = Mixture(torch.tensor([[-0.3, 0.2], [0.35, -0.1]]), PI, 0.15)
    model = wrap(mix, n_classes=2, input_shape=(1, 1, 2), name="mixture2")
    gen = generator(3)
    x0 = mix.sample(4000, gen).view(-1, 1, 1, 2)
    res = mcmc_sample(model, x0, cfg, gen, value_range=(-1.0, 1.0))
    _moments_ok(res.x, model, atol_mean=0.015, atol_var=0.005)
    assert 0.2 < float(res.acceptance.mean()) < 0.99


def test_mala_acceptance_tends_to_one_as_the_step_shrinks_and_temperature_is_recorded():
    model = model16()
    rates = []
    for eps in (3e-2, 3e-3, 3e-5):
        gen = generator(0)
        x0 = model.net.sample(256, gen).view(-1, 1, 4, 4)
        rates.append(float(mcmc_sample(model, x0, MALAConfig(steps=20, step_size=eps), gen).acceptance.mean()))
    assert rates[0] < rates[1] < rates[2] and rates[2] > 0.995, rates
    d = MALAConfig(temperature=2.0).to_dict()
    assert d["sampler"] == "mala" and d["temperature"] == 2.0


def test_proposals_outside_the_box_are_rejected():
    model = model16()
    gen = generator(0)
    x0 = torch.full((64, 1, 4, 4), 0.99)
    res = mcmc_sample(model, x0, MHConfig(steps=50, step_size=0.5), gen, value_range=(-1.0, 1.0))
    assert res.x.abs().max() <= 1.0


def test_tempered_mala_targets_p_to_the_one_over_t():
    """p~^(1/T) of a Gaussian of std s is a Gaussian of std s sqrt(T)."""
    mix = Mixture(torch.zeros(1, 2), torch.ones(1), 0.1)
    model = wrap(mix, n_classes=1, input_shape=(1, 1, 2), name="gauss")
    gen = generator(0)
    res = mcmc_sample(model, mix.sample(4000, gen).view(-1, 1, 1, 2), MALAConfig(steps=200, step_size=0.01,
                                                                                temperature=4.0), gen)
    assert res.x.flatten(1).std(0).tolist() == pytest.approx([0.2, 0.2], rel=0.05)


def test_dsm_and_ssm_equal_closed_forms_on_a_gaussian():
    """log p~ = -||x - m||^2 / (2 s^2): s(x) = -(x - m) / s^2, so DSM = 1/2 ||-(x + sig n - m)/s^2 + n/sig||^2 and
    SSM = -||v||^2 / s^2 + 1/2 (v . (x - m))^2 / s^4."""
    m, s = torch.tensor([0.2, -0.1, 0.3]), 0.5
    logp = lambda x: -(x - m).pow(2).sum(1) / (2 * s ** 2)  # noqa: E731
    gen = generator(0)
    x, n, v = (torch.randn(50, 3, generator=gen) for _ in range(3))
    sig = 0.3
    want = 0.5 * (-(x + sig * n - m) / s ** 2 + n / sig).pow(2).sum(1)
    assert torch.allclose(dsm_loss(model_score(logp), x, n, sig), want, atol=1e-5)
    want = -v.pow(2).sum(1) / s ** 2 + 0.5 * (v * (x - m)).sum(1).pow(2) / s ** 4
    assert torch.allclose(ssm_loss(model_score(logp), x, v), want, atol=1e-4)


def test_bits_per_dim_of_the_uniform_density_on_minus_one_one_is_eight():
    d = 3 * 32 * 32  # U(-1, 1)^d has log p = -d log 2; bins of 2/256: 8 bits per dimension
    assert bits_per_dim(-d * math.log(2), d, math.log(2 / 256)) == pytest.approx(8.0)
