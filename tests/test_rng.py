"""Draws keyed by sample index (jembench.rng): the same per sample however a range is split."""

import pytest
import torch

from jembench import forward
from jembench.rng import NOISE_CHUNK, KeyedNoise, StackedNoise, keyed
from jembench.runtime import derive_seed, generator, randn


@pytest.mark.parametrize("kind", ["randn", "rand"])
@pytest.mark.parametrize("chunk", [NOISE_CHUNK, 64, 5])
def test_keyed_draws_do_not_depend_on_how_the_range_is_split(kind, chunk):
    whole = keyed(0, 150, (2, 3), 7, "p", kind=kind, chunk=chunk)
    for bs in (7, 64):
        parts = torch.cat([keyed(s, min(s + bs, 150), (2, 3), 7, "p", kind=kind, chunk=chunk)
                           for s in range(0, 150, bs)])
        assert torch.equal(parts, whole)
    assert not torch.equal(keyed(0, 150, (2, 3), 7, "q", kind=kind, chunk=chunk), whole)  # the purpose matters
    if kind == "rand":
        assert 0 <= float(whole.min()) and float(whole.max()) < 1


def test_test_noise_recipe_is_the_0_1_0_one():
    """Sample i of the test noise is row i % 1024 of randn from derive_seed(seed, "test-noise", i // 1024)."""
    got = forward.test_noise(1020, 1030, (1, 2, 2), 0.5, 3)
    first = torch.randn((NOISE_CHUNK, 1, 2, 2), generator=generator(derive_seed(3, "test-noise", 0)))
    second = torch.randn((NOISE_CHUNK, 1, 2, 2), generator=generator(derive_seed(3, "test-noise", 1)))
    assert torch.equal(got, 0.5 * torch.cat([first[1020:], second[:6]]))


def test_keyed_noise_blocks_and_draw_counter():
    """Row block g of draw t is keyed (seed, *labels, *groups[g], t); runtime.randn hands over to it."""
    like = torch.zeros(1)
    noise = KeyedNoise(5, 10, 13, "purify", groups=[(0,), (1,)])
    a, b = randn((6, 4), noise, like), noise.randn((6, 4), like)
    assert torch.equal(a[:3], keyed(10, 13, (4,), 5, "purify", 0, 0, chunk=noise.chunk))
    assert torch.equal(a[3:], keyed(10, 13, (4,), 5, "purify", 1, 0, chunk=noise.chunk))
    assert torch.equal(b[3:], keyed(10, 13, (4,), 5, "purify", 1, 1, chunk=noise.chunk))
    with pytest.raises(ValueError, match="rows"):
        noise.randn((5, 4), like)


def test_clf_calib_ood_numbers_do_not_depend_on_the_batch_size(tiny_jem):
    """Test noise, gradient scores, synthetic OOD sets and the bootstrap resamples (drawn over whole per-sample
    arrays) are keyed by sample index: batch sizes 7 and 64 give identical metrics and intervals."""
    import jembench

    got = []
    for bs in (7, 64):
        kw = dict(n=30, sigma=0.05, batch_size=bs, progress=False)
        evs = (jembench.calib(tiny_jem, bootstrap=50, **kw).evaluations
               + jembench.ood(tiny_jem, out="noise,uniform,constant,interp,rotated", scores="logp,msp,gradnorm",
                              bootstrap=50, figures=False, **kw).evaluations)
        got.append([(e.metrics, e.intervals) for e in evs])
    assert got[0] == got[1]
    assert any(k.startswith("auroc/gradnorm/interp") for k in got[0][1][0])


def test_stacked_noise_gives_each_block_its_own_keyed_rows():
    """StackedNoise: block p's rows of draw t are block p's own KeyedNoise draw t (forward then reverse chains)."""
    like = torch.zeros(1)
    a, b = KeyedNoise(5, 3, 7, "forward"), KeyedNoise(5, 0, 2, "reverse")
    stacked = StackedNoise([KeyedNoise(5, 3, 7, "forward"), KeyedNoise(5, 0, 2, "reverse")])
    first, second = stacked.randn((6, 2), like), randn((6,), stacked, like)
    assert torch.equal(first, torch.cat([a.randn((4, 2), like), b.randn((2, 2), like)]))
    assert torch.equal(second, torch.cat([a.randn((4,), like), b.randn((2,), like)]))
    assert not torch.equal(first[:2], first[4:])
    with pytest.raises(ValueError, match="rows"):
        stacked.rand((5,))
