"""OOD scores: orientation (higher = more in-distribution), formulas, and the batched gradient score."""

import pytest
import torch
import torch.nn as nn

from jembench.data.imageset import ImageSet
from jembench.errors import JembenchError
from jembench.forward import ForwardCache
from jembench.forward import test_noise as forward_noise
from jembench.models.hybrid import HybridModel, ModelInfo, wrap
from jembench.models.wrn import JEMNet
from jembench.scores import SCORES, energy_score, gradnorm_scores, logit_scores, parse_scores


class FixedLogits(nn.Module):
    """logits = first 3 input values * 10: images choose their own logits."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([10.0]))

    def forward(self, x):
        return self.scale * x.flatten(1)[:, :3]


def _images(n=20, seed=0, shape=(1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return ImageSet("rand", "test", torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8))


def test_orientation_on_hand_built_model():
    model = wrap(FixedLogits(), n_classes=3, input_shape=(1, 1, 3), mean=(0.0,), std=(1.0,))
    # sample 0: one dominant class (confident, high density); sample 1: flat logits (uncertain, low density)
    images = torch.tensor([[[[255, 0, 0]]], [[[26, 26, 26]]]], dtype=torch.uint8)
    fp = ForwardCache().get(model, ImageSet("hand", "test", images), progress=False)
    s = logit_scores(fp, SCORES, temperature=2.0)
    logits = torch.tensor([[10.0, 0, 0], [10 * 26 / 255] * 3])
    assert torch.allclose(fp.logits, logits, atol=1e-5)
    assert torch.allclose(s["logp"], logits.logsumexp(-1), atol=1e-5)
    assert torch.allclose(s["msp"], logits.softmax(-1).max(-1).values, atol=1e-6)
    assert torch.allclose(s["maxlogit"], torch.tensor([10.0, 10 * 26 / 255]), atol=1e-5)
    assert torch.allclose(s["energy-T"], 2.0 * (logits / 2.0).logsumexp(-1), atol=1e-5)
    for name in ("logp", "msp", "maxlogit", "energy-T"):
        assert s[name][0] > s[name][1], name  # confident sample scores as more in-distribution


def test_energy_temperature_limits():
    logits = torch.tensor([[3.0, 1.0, -2.0]])
    assert torch.allclose(energy_score(logits, 1.0), logits.logsumexp(-1))
    assert torch.allclose(energy_score(logits, 1e-3), torch.tensor([3.0]), atol=1e-3)
    with pytest.raises(JembenchError, match="temperature"):
        energy_score(logits, 0.0)


def test_logp_uses_energy_head_of_unconditional_models():
    torch.manual_seed(1)
    net = JEMNet(10, 1, "none", 1, 10)
    info = ModelInfo(family="jem", source_format="jem", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="none", head="f", name="uncond")
    model = HybridModel(net, info)
    imageset = _images(6)
    s = logit_scores(ForwardCache().get(model, imageset, progress=False), ["logp"])
    x = model.to_model_space(imageset.pixels01())
    with torch.no_grad():
        expected = net.energy_output(net.f(x)).squeeze(-1)
        assert not torch.allclose(expected, net.class_output(net.f(x)).logsumexp(-1))
    assert torch.allclose(s["logp"], expected, atol=1e-5)


def _bn_model():
    torch.manual_seed(2)
    net = JEMNet(10, 1, "batch", 1, 10)
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BN is not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="batch", name="bn")
    return HybridModel(net, info)


@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_gradnorm_equals_per_sample_autograd_and_ignores_batch_size(sigma):
    model, imageset = _bn_model(), _images(13)
    x = model.to_model_space(imageset.pixels01()) + forward_noise(0, 13, (1, 8, 8), sigma, 5)
    expected = []
    for i in range(13):  # one sample at a time: no possible mixing between samples
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.log_px(xi).sum(), xi)
        expected.append(-g.flatten().norm())
    expected = torch.stack(expected)
    for bs in (1, 4, 13):
        got = gradnorm_scores(model, imageset, sigma=sigma, seed=5, batch_size=bs, progress=False)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6), bs
    assert (expected < 0).all() and expected.std() > 0


def test_gradnorm_of_a_train_mode_model_is_taken_in_eval_mode_and_the_mode_restored():
    model, imageset = _bn_model(), _images(6)
    expected = gradnorm_scores(model.eval(), imageset, progress=False)
    stats = [b.clone() for b in model.buffers()]
    got = gradnorm_scores(model.train(), imageset, batch_size=4, progress=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))


def test_parse_scores():
    assert parse_scores(None) == list(SCORES)
    assert parse_scores(["gradnorm,logp", "msp"]) == ["logp", "msp", "gradnorm"]
    with pytest.raises(JembenchError, match="unknown OOD score 'px'"):
        parse_scores(["px"])
