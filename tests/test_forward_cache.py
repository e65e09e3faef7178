"""The shared forward cache: one model pass per (model, data, sigma, seed, refinement), in memory and on disk."""

import torch

from jembench.data import get_dataset
from jembench.evaluators.calib import calib
from jembench.evaluators.clf import clf
from jembench import forward
from jembench.forward import ForwardCache, model_fingerprint
from jembench.sampling.sgld import SGLDConfig


def _digits(n=24):
    return get_dataset("digits", "test").first(n)


def _count_calls(model):
    """Wrap the model's one-pass forward with a counter (independent of ForwardCache.model_calls)."""
    calls = {"n": 0}
    original = model.logits_and_log_px

    def counted(x):
        calls["n"] += 1
        return original(x)

    model.logits_and_log_px = counted
    return calls


def test_second_get_is_served_from_memory(tiny_jem):
    data, cache = _digits(), ForwardCache()
    calls = _count_calls(tiny_jem)
    a = cache.get(tiny_jem, data, sigma=0.03, seed=1, batch_size=10)
    assert cache.model_calls == 3 and calls["n"] == 3  # 24 images in batches of 10
    b = cache.get(tiny_jem, data, sigma=0.03, seed=1, batch_size=16)  # the batch size is not part of the key
    assert b is a and cache.model_calls == 3 and calls["n"] == 3
    assert a.logits.shape == (24, 10) and a.log_px.shape == (24,)
    torch.testing.assert_close(a.log_px, a.logits.logsumexp(-1))
    assert a.protocol["test_sigma"] == 0.03 and a.protocol["n"] == 24 and a.protocol["refine"] is None
    cache.get(tiny_jem, data, sigma=0.0, seed=1)
    cache.get(tiny_jem, data, sigma=0.03, seed=2)
    assert cache.model_calls == 5  # other sigma, other seed: new passes


def test_noise_and_logits_do_not_depend_on_the_batch_size(tiny_jem):
    noise = forward.test_noise  # (not imported by name: pytest would collect it as a test)
    n0 = noise(0, 1030, (1, 8, 8), 0.1, 5)  # crosses a NOISE_CHUNK boundary
    pieces = torch.cat([noise(0, 7, (1, 8, 8), 0.1, 5), noise(7, 1025, (1, 8, 8), 0.1, 5),
                        noise(1025, 1030, (1, 8, 8), 0.1, 5)])
    torch.testing.assert_close(n0, pieces, rtol=0, atol=0)
    assert abs(float(n0.std()) - 0.1) < 0.002 and abs(float(n0.mean())) < 0.002
    data = _digits()
    refine = SGLDConfig(steps=2, step_size=1.0, noise=0.01)
    for cfg in (None, refine):
        small = ForwardCache().get(tiny_jem, data, sigma=0.1, seed=3, refine=cfg, batch_size=5)
        large = ForwardCache().get(tiny_jem, data, sigma=0.1, seed=3, refine=cfg, batch_size=24)
        torch.testing.assert_close(small.logits, large.logits, rtol=1e-5, atol=1e-5)


def test_refinement_changes_the_inputs_is_recorded_and_restores_the_model(tiny_jem):
    data, cache = _digits(12), ForwardCache()
    tiny_jem.train()
    plain = cache.get(tiny_jem, data)
    refined = cache.get(tiny_jem, data, refine=SGLDConfig(steps=3, step_size=1.0, noise=0.01))
    assert refined.key != plain.key
    assert not torch.allclose(plain.log_px, refined.log_px)
    assert float(refined.log_px.mean()) > float(plain.log_px.mean())  # SGLD ascends log p(x)
    assert refined.protocol["refine"] == {"sampler": "sgld", "steps": 3, "step_size": 1.0, "noise": 0.01,
                                          "clamp_x": False, "grad_clamp": None}
    assert tiny_jem.training  # the caller's mode is restored
    assert all(p.grad is None for p in tiny_jem.parameters())


def test_changed_weights_give_a_new_pass(tiny_jem):
    data, cache = _digits(8), ForwardCache()
    fp0 = model_fingerprint(tiny_jem)
    cache.get(tiny_jem, data)
    with torch.no_grad():
        tiny_jem.net.class_output.bias.add_(1.0)
    assert model_fingerprint(tiny_jem) != fp0
    cache.get(tiny_jem, data)
    assert cache.model_calls == 2


def test_disk_cache_is_reused_by_a_second_cache(tiny_jem, tmp_path):
    data = _digits()
    first = ForwardCache(tmp_path)
    a = first.get(tiny_jem, data, sigma=0.03)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and first.model_calls == 1
    second = ForwardCache(tmp_path)
    calls = _count_calls(tiny_jem)
    b = second.get(tiny_jem, data, sigma=0.03)
    assert second.model_calls == 0 and calls["n"] == 0 and second.disk_hits == 1
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    assert b.protocol == a.protocol and torch.equal(a.labels, b.labels)
    (tmp_path / f"{a.key}.pt").write_bytes(b"truncated")  # a corrupt entry is recomputed, not trusted
    third = ForwardCache(tmp_path)
    torch.testing.assert_close(third.get(tiny_jem, data, sigma=0.03).logits, a.logits)
    assert third.model_calls == 1


def test_calib_after_clf_on_a_shared_cache_calls_the_model_no_more(tiny_jem):
    cache = ForwardCache()
    calls = _count_calls(tiny_jem)
    r1 = clf(tiny_jem, "digits", n=40, cache=cache, device="cpu", sigma=0.03)
    after_clf = (cache.model_calls, calls["n"])
    assert after_clf[0] >= 1 and after_clf[1] >= 1
    r2 = calib(tiny_jem, "digits", n=40, cache=cache, device="cpu", sigma=0.03, bootstrap=10)
    assert (cache.model_calls, calls["n"]) == after_clf
    assert r1.evaluations[0].protocol["dataset_sha256"] == r2.evaluations[0].protocol["dataset_sha256"]
    assert r2.evaluations[0].metrics["accuracy"] == r1.evaluations[0].metrics["accuracy"]


def test_refinement_is_jems_test_clf_loop(tiny_jem):
    """JEM's eval_wrn_ebm.py test_clf: x_k += grad_x f(x_k).sum() + 0.01 * noise, f = logsumexp of logits."""
    x0 = tiny_jem.to_model_space(_digits(6).pixels01())
    cfg = SGLDConfig(steps=3, step_size=1.0, noise=0.0)  # noise-free, so the loop is deterministic
    x = x0.clone()
    for _ in range(3):
        x_k = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(tiny_jem.logits(x_k).logsumexp(1).sum(), [x_k])
        x = x + g
    torch.testing.assert_close(forward.refine_inputs(tiny_jem, x0, cfg, 0, 0), x)
    noisy = forward.refine_inputs(tiny_jem, x0, SGLDConfig(steps=3, step_size=1.0, noise=0.01), 0, 0)
    assert 0.005 < float((noisy - x).std()) < 0.05  # three steps of 0.01 noise (pushed through the gradients)
