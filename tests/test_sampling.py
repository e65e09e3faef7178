"""Samplers against known answers: SGLD on a 2-D Gaussian mixture, clamps, BN restoration, seeds, buffer, inits."""

import math

import pytest
import torch

from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet
from jembench.runtime import generator
from jembench.sampling import (GaussianInit, JEMPPConfig, ReplayBuffer, SGLDConfig, UniformInit, jempp_sample,
                               preserve_bn_stats, sgld_sample)

# a 2-D mixture of two Gaussians with overlapping modes (so short Langevin chains mix between them)
W = torch.tensor([0.3, 0.7], dtype=torch.float64)
MU = torch.tensor([[-0.8, 0.0], [0.8, 0.4]], dtype=torch.float64)
COV = torch.stack([torch.tensor([[0.25, 0.05], [0.05, 0.16]]), torch.tensor([[0.16, -0.04], [-0.04, 0.25]])]).double()


def mixture_log_density(x: torch.Tensor, y=None) -> torch.Tensor:
    """log p(x) = logsumexp_k [log w_k + log N(x; mu_k, Sigma_k)]."""
    comps = torch.distributions.MultivariateNormal(MU.float(), covariance_matrix=COV.float())
    return (comps.log_prob(x.unsqueeze(1)) + W.float().log()).logsumexp(1)


def mixture_moments() -> tuple[torch.Tensor, torch.Tensor]:
    mean = (W[:, None] * MU).sum(0)
    second = (W[:, None, None] * (COV + MU[:, :, None] * MU[:, None, :])).sum(0)
    return mean, second - torch.outer(mean, mean)


def test_langevin_matches_gaussian_mixture_moments():
    cfg = SGLDConfig.langevin(step_size=0.01, steps=600)
    assert cfg.noise == pytest.approx(math.sqrt(0.02)) and cfg.temperature == pytest.approx(1.0)
    gen = generator(0)
    x0 = 2.0 * torch.randn(4000, 2, generator=gen)  # far from the target: the chains must get there
    x = sgld_sample(None, x0, cfg, gen, log_density=mixture_log_density).double()
    mean, cov = mixture_moments()
    assert torch.allclose(x.mean(0), mean, atol=0.04), (x.mean(0), mean)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.04), (torch.cov(x.T), cov)


def test_jem_noise_is_cold_langevin():
    """JEM's alpha 1, sigma 0.01 targets p^(1/T) with T = 5e-5: on the mixture it collapses to the modes."""
    assert SGLDConfig().temperature == pytest.approx(5e-5)
    gen = generator(1)
    cold = SGLDConfig(steps=300, step_size=0.01, noise=0.001)  # T = 5e-5, as JEM (alpha 1, sigma 0.01)
    x = sgld_sample(None, 2.0 * torch.randn(2000, 2, generator=gen), cold, gen, log_density=mixture_log_density)
    to_mode = (x.unsqueeze(1) - MU.float()).norm(dim=-1).min(1).values  # modes of p are near the mu_k here
    assert to_mode.quantile(0.99) < 0.1  # a T = 1 chain is spread over ~0.5 around them


def _steep(x, y=None):
    return -(50.0 * x).pow(2).flatten(1).sum(1)  # gradients of order 1e3


def test_proximal_clamp_bounds_every_step():
    gen = generator(0)
    x = torch.rand(64, 1, 4, 4, generator=gen) * 2 - 1
    cfg = SGLDConfig(steps=1, step_size=0.5, noise=0.0, grad_clamp=0.02)
    for _ in range(5):
        nxt = sgld_sample(None, x, cfg, gen, log_density=_steep)
        assert (nxt - x).abs().max() <= 0.5 * 0.02 + 1e-7
        x = nxt
    free = sgld_sample(None, x, SGLDConfig(steps=1, step_size=0.5, noise=0.0), gen, log_density=_steep)
    assert (free - x).abs().max() > 0.1  # without the clamp the same step moves far: the bound above is real


def test_clamp_x_keeps_chains_in_range():
    gen = generator(0)
    x0 = torch.rand(32, 1, 4, 4, generator=gen) * 2 - 1
    up = lambda x, y=None: 10 * x.flatten(1).sum(1)  # noqa: E731 - pushes every pixel up
    x = sgld_sample(None, x0, SGLDConfig(steps=5, step_size=1.0, noise=0.1, clamp_x=True), gen, log_density=up)
    assert x.min() >= -1 and x.max() <= 1 and (x == 1).float().mean() > 0.9
    free = sgld_sample(None, x0, SGLDConfig(steps=5, step_size=1.0, noise=0.1), gen, log_density=up)
    assert free.max() > 1


def test_jempp_sampler_one_gradient_per_outer_step_clipped_moves():
    calls = []

    def counted(x, y=None):
        calls.append(1)
        return _steep(x)

    gen = generator(0)
    x0 = torch.rand(16, 1, 4, 4, generator=gen) * 0.2 - 0.1
    cfg = JEMPPConfig(outer_steps=3, inner_steps=5, step_size=0.01, grad_clamp=1.0)
    x = jempp_sample(None, x0, cfg, gen, log_density=counted)
    assert len(calls) == 3
    assert (x - x0).abs().max() <= 3 * 5 * 0.01 + 1e-6 and x.abs().max() <= 1


def _bn_model() -> HybridModel:
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="batch")
    return HybridModel(JEMNet(10, 1, "batch", 1, 10), info)


def test_bn_stats_change_during_bn_train_sampling_and_are_restored():
    model = _bn_model()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    seen = []

    def spy(x, y=None):
        out = model.log_px(x)
        seen.append(model.net.f.bn1.running_mean.clone())
        assert model.net.f.bn1.training  # BN in train mode while sampling
        return out

    gen = generator(0)
    sgld_sample(model, torch.randn(16, 1, 8, 8, generator=gen), SGLDConfig(steps=3), gen, bn_train=True,
                log_density=spy)
    assert not torch.allclose(seen[-1], before["net.f.bn1.running_mean"])  # they did change during sampling
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert not any(m.training for m in model.modules())  # eval mode restored


def test_preserve_bn_stats_restores_after_exception():
    model = _bn_model()
    before = model.net.f.bn1.running_var.clone()
    with pytest.raises(RuntimeError):
        with preserve_bn_stats(model):
            model.train()
            model(torch.randn(8, 1, 8, 8) * 5)
            raise RuntimeError("boom")
    assert torch.equal(model.net.f.bn1.running_var, before) and not model.training


def test_same_seed_same_chains(tiny_jem):
    x0 = torch.rand(8, 1, 8, 8, generator=generator(3)) * 2 - 1
    cfg = SGLDConfig(steps=5, step_size=1.0, noise=0.01)
    a = sgld_sample(tiny_jem, x0, cfg, generator(7))
    b = sgld_sample(tiny_jem, x0, cfg, generator(7))
    c = sgld_sample(tiny_jem, x0, cfg, generator(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    y = torch.arange(8)
    cond = [sgld_sample(tiny_jem, x0, cfg, generator(7), y=y) for _ in range(2)]  # class-conditional chains too
    assert torch.equal(*cond)


def test_buffer_restart_fraction_and_update():
    gen = generator(0)
    buf = ReplayBuffer(1000, UniformInit((1, 2, 2)), gen, reinit_freq=0.25, data=torch.full((1000, 1, 2, 2), 5.0))
    x, idx = buf.sample(20000)
    fresh = (x != 5.0).flatten(1).all(1).float().mean().item()
    assert abs(fresh - 0.25) < 0.015
    assert ((x == 5.0).flatten(1).all(1) | ((x >= -1) & (x <= 1)).flatten(1).all(1)).all()
    x2, idx2 = buf.sample(10)
    buf.update(idx2, torch.zeros_like(x2))
    assert (buf.data[idx2] == 0).all()
    assert len(buf) == 1000 and buf.labels is None


def test_buffer_restarts_are_class_conditional_with_gaussian_init():
    means = torch.tensor([[-0.5, -0.5], [0.5, 0.5]])
    init = GaussianInit(means, torch.eye(2).repeat(2, 1, 1) * 1e-6, (2,))
    buf = ReplayBuffer(100, init, generator(0), reinit_freq=1.0, n_classes=2)
    x, idx = buf.sample(50)
    assert torch.allclose(x, means[buf.labels[idx]], atol=0.05)


def test_gaussian_init_moments():
    gen = generator(0)
    d, n = 4, 20000
    true_mu = torch.tensor([[0.3, -0.2, 0.0, 0.1], [-0.4, 0.2, 0.3, 0.0]])
    a = torch.randn(2, d, d, generator=gen) * 0.15
    true_cov = a @ a.transpose(1, 2) + 0.01 * torch.eye(d)
    y = torch.arange(2).repeat_interleave(n)
    x = torch.cat([true_mu[k] + torch.randn(n, d, generator=gen) @ torch.linalg.cholesky(true_cov[k]).T
                   for k in range(2)])
    init = GaussianInit.fit(x.view(-1, 1, 2, 2), y, 2, lo=-10, hi=10)
    assert torch.allclose(init.means, true_mu, atol=0.01) and torch.allclose(init.covs, true_cov, atol=0.01)
    for k in range(2):
        s = init(n, generator(k + 1), torch.full((n,), k)).flatten(1)
        assert s.shape == (n, d)
        assert torch.allclose(s.mean(0), init.means[k], atol=0.01)  # standard error ~0.003
        assert torch.allclose(torch.cov(s.T), init.covs[k] + GaussianInit.JITTER * torch.eye(d), atol=0.01)
    # stored as checkpoint extras and back: same samples for the same seed; clamped to [lo, hi]
    again = GaussianInit.from_extras(init.to_extras(), (1, 2, 2), lo=-10, hi=10)
    assert torch.equal(again(5, generator(9)), init(5, generator(9)))
    tight = GaussianInit.from_extras(init.to_extras(), (1, 2, 2), lo=-0.1, hi=0.1)(1000, generator(0))
    assert tight.min() >= -0.1 and tight.max() <= 0.1


def test_jempp_sampler_restores_bn_stats_too():
    """JEM++ samples with BN in train mode: its running statistics move during sampling and are put back."""
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    moved = []

    def spy(x, y=None):
        moved.append(not torch.equal(model.net.f.bn1.running_mean, before["net.f.bn1.running_mean"]))
        return model.log_px(x)

    gen = generator(0)
    jempp_sample(model, torch.randn(16, 1, 8, 8, generator=gen), JEMPPConfig(outer_steps=3, inner_steps=2), gen,
                 bn_train=True, log_density=spy)
    assert moved[-1]  # the second and later gradients saw updated statistics
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items()) and not model.training
