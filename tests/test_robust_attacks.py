"""The attack plumbing: pixel wrapper, purification wrapper, BPDA / EOT / full gradients, seeding, passes."""

import pytest
import torch
import torch.nn as nn
import torchattacks

from jembench.attacks import KeyedPGD, PassCounter, PixelClassifier, PurifyConfig, build_attack, run_attack
from jembench.models import wrap
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)


IDENTITY = PurifyConfig(steps=2, step_size=0.0, noise=0.0, copies=1, sigma=0.0)  # purifies to the input itself


def _adv(model, purify, batch, *, gradient="bpda", name="pgd", norm="linf", eot=1, seed=7, eps=8 / 255, alpha=None):
    wrapper = PixelClassifier(model, purify, gradient=gradient, seed=3)
    atk = build_attack(name, wrapper, norm=norm, eps=eps, steps=5, step_size=alpha, eot=eot)
    return run_attack(atk, *batch, seed)


def test_pixel_wrapper_matches_torchattacks_own_normalisation(tiny_jem, batch):
    """Independent path: torchattacks normalising inputs itself (set_normalization_used) on the raw network."""
    batch = ((batch[0] * 256).floor() / 256, batch[1])  # dyadic pixels: the normalisation round trip is exact
    ours = run_attack(KeyedPGD(PixelClassifier(tiny_jem), eps=8 / 255, alpha=2 / 255, steps=5, random_start=False),
                      *batch, 7)
    atk = torchattacks.PGD(tiny_jem, eps=8 / 255, alpha=2 / 255, steps=5, random_start=False)
    atk.set_normalization_used(mean=[0.5], std=[0.5])  # it then takes and returns model-space images
    theirs = atk(2 * batch[0] - 1, batch[1]) * 0.5 + 0.5
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert (ours - batch[0]).abs().max() > 7 / 255


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("gradient", ["bpda", "full"])
def test_attack_through_identity_purifier_equals_plain_attack(tiny_jem, batch, norm, gradient):
    eps = 8 / 255 if norm == "linf" else 0.5
    plain = _adv(tiny_jem, None, batch, norm=norm, eps=eps)
    through = _adv(tiny_jem, IDENTITY, batch, gradient=gradient, norm=norm, eps=eps)
    assert torch.equal(plain, through)


@pytest.mark.parametrize("norm,name", [("linf", "pgd"), ("l2", "pgd"), ("linf", "apgd-ce")])
def test_eot_with_zero_noise_equals_plain_attack(tiny_jem, batch, norm, name):
    """A deterministic purifier (one real SGLD step, no noise): EOT over 3 copies changes nothing."""
    det = PurifyConfig(steps=1, step_size=1.0, noise=0.0, copies=1, sigma=0.0)
    eps = 0.3 if norm == "linf" else 2.0
    batch = (batch[0], tiny_jem(2 * batch[0] - 1).argmax(-1))  # all correct: APGD only returns the points it fools
    one = _adv(tiny_jem, det, batch, norm=norm, eps=eps, name=name)
    three = _adv(tiny_jem, det, batch, norm=norm, eps=eps, name=name, eot=3)
    assert torch.allclose(one, three, atol=1e-6)
    assert not torch.equal(one, batch[0])


@pytest.mark.parametrize("norm,theirs", [("linf", torchattacks.PGD), ("l2", torchattacks.PGDL2)])
def test_keyed_pgd_without_random_start_is_torchattacks_pgd(tiny_jem, batch, norm, theirs):
    wrapper = PixelClassifier(tiny_jem)
    eps = 8 / 255 if norm == "linf" else 0.5
    ref = theirs(wrapper, eps=eps, alpha=eps / 4, steps=5, random_start=False)
    ours = KeyedPGD(wrapper, norm, eps=eps, alpha=eps / 4, steps=5, random_start=False)
    assert torch.allclose(run_attack(ours, *batch, 11), run_attack(ref, *batch, 11), atol=1e-6)
    zero = run_attack(KeyedPGD(wrapper, "l2", eps=0.0, alpha=0.0, steps=3), *batch, 11)
    assert torch.equal(zero, batch[0])  # torchattacks' PGDL2 returns NaN here


def test_batched_eot_equals_torchattacks_eot_loop(tiny_jem, batch):
    """EOT replicas stacked along the batch = torchattacks' EOTPGD calling the purifier once per replica: with the
    purification noise keyed by sample and replica, both see the same noise (stochastic purifier, 3 replicas)."""
    advs = []
    for make in (lambda w: torchattacks.EOTPGD(w, eps=0.1, alpha=0.02, steps=3, eot_iter=3, random_start=False),
                 lambda w: KeyedPGD(w, eps=0.1, alpha=0.02, steps=3, eot_iter=3, random_start=False)):
        wrapper = PixelClassifier(tiny_jem, PurifyConfig(steps=2, copies=2, noise=0.05, sigma=0.05))
        wrapper.key(5, 0, len(batch[0]))
        advs.append(run_attack(make(wrapper), *batch, 0))
    assert torch.allclose(advs[0], advs[1], atol=1e-6)
    assert not torch.equal(advs[0], batch[0])


def test_batched_purifications_equal_one_by_one(tiny_jem, batch):
    """R purifications stacked as replicas in one call give the logits of R separate calls."""
    cfg = PurifyConfig(steps=2, copies=3)
    one, many = PixelClassifier(tiny_jem, cfg), PixelClassifier(tiny_jem, cfg)
    one.key(9, 40, 6)
    many.key(9, 40, 6)
    loop = torch.stack([one(batch[0]) for _ in range(4)])
    stacked = many(batch[0].repeat(4, 1, 1, 1)).view(4, 6, -1)
    assert torch.allclose(loop, stacked, atol=1e-5)
    assert not torch.allclose(loop[0], loop[1])  # fresh noise per replica
    with pytest.raises(ValueError, match="replicas"):
        many(batch[0][:5])


def test_same_seed_same_adversarials_and_rng_untouched(tiny_jem, batch):
    noisy = PurifyConfig(steps=1, copies=2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = _adv(tiny_jem, noisy, batch, eot=2)
    after = torch.rand(1)
    b = _adv(tiny_jem, noisy, batch, eot=2)
    c = _adv(tiny_jem, noisy, batch, eot=2, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(before, after)  # run_attack seeds torch's global RNG inside fork_rng only


def _bn_model() -> HybridModel:
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="batch", name="bn")
    return HybridModel(JEMNet(10, 1, "batch", 1, 10), info).eval()


def test_purification_restores_bn_stats_and_is_seeded(batch):
    model = _bn_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = PurifyConfig(steps=3, copies=2)
    a = PixelClassifier(model, cfg, seed=5)(batch[0])
    b = PixelClassifier(model, cfg, seed=5)(batch[0])
    c = PixelClassifier(model, cfg, seed=6)(batch[0])
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not model.training and not any(m.training for m in model.modules())


def test_attacks_leave_a_batchnorm_model_in_eval_mode_with_its_statistics(batch):
    """torchattacks puts a module it found in training mode back into it after the attack: the wrapper must not
    pass that on (BatchNorm would then use batch statistics and overwrite its running ones), and a gradient
    through the unrolled chain must survive the statistics being restored."""
    model = _bn_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for gradient in ("bpda", "full"):
        wrapper = PixelClassifier(model, PurifyConfig(steps=2, copies=1), gradient=gradient)
        run_attack(build_attack("pgd", wrapper, norm="linf", eps=0.1, steps=2), *batch, 0)
        assert not model.training and not any(m.training for m in model.modules()), gradient
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()), gradient
    plain = PixelClassifier(model)
    adv = run_attack(build_attack("pgd", plain, norm="linf", eps=0.0, steps=2), *batch, 0)
    with torch.no_grad():
        assert torch.equal(plain(adv).argmax(1), model(model.to_model_space(batch[0])).argmax(1))  # eps 0 = clean


def test_pass_counter(tiny_jem, batch):
    """Per image and attack step: eot * copies * (K SGLD steps + 1) forwards."""
    counter = PassCounter()
    wrapper = PixelClassifier(tiny_jem, PurifyConfig(steps=2, copies=3), counter=counter)
    run_attack(build_attack("pgd", wrapper, norm="linf", eps=0.1, steps=4, eot=2), *batch, 0)
    assert counter.forward == 4 * 2 * 3 * (2 + 1) * len(batch[0])
    assert counter.backward == 4 * 2 * 3 * (2 + 1) * len(batch[0])
    counter.reset()
    full = PixelClassifier(tiny_jem, PurifyConfig(steps=2, copies=3), gradient="full", counter=counter)
    run_attack(build_attack("pgd", full, norm="linf", eps=0.1, steps=1), *batch, 0)
    assert counter.backward == 3 * (2 + 1 + 2 * 2) * len(batch[0])


def test_full_gradient_differs_from_bpda(tiny_jem, batch):
    """Through a real chain the two gradients differ (so the full-gradient row is a different attack)."""
    x = batch[0].clone().requires_grad_(True)
    grads = []
    for gradient in ("bpda", "full"):
        wrapper = PixelClassifier(tiny_jem, PurifyConfig(steps=2, copies=1, noise=0.0, sigma=0.0), gradient=gradient)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(wrapper(x), batch[1]), x)
        grads.append(g)
    assert not torch.allclose(*grads)


def test_linear_wrap_forward(batch):
    lin = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), n_classes=10, input_shape=(1, 8, 8))
    assert torch.allclose(PixelClassifier(lin)(batch[0]), lin(2 * batch[0] - 1), atol=1e-6)
