"""Memory bounded in N: synthetic OOD sets built chunk by chunk equal the one-draw recipe."""

import pytest
import torch

import jembench.data.synthetic as synthetic
from jembench.data.imageset import ImageSet
from jembench.runtime import generator


def one_draw(name, ins, seed):
    """The recipe drawn for the whole set at once (jembench 0.1.0)."""
    n, shape = len(ins), ins.shape
    g = generator(synthetic.derive_seed(seed, "synthetic-ood", name))
    if name == "noise":
        return synthetic._quantise(synthetic.NOISE_MEAN + synthetic.NOISE_STD * torch.randn((n, *shape), generator=g))
    if name == "uniform":
        return synthetic._quantise(torch.rand((n, *shape), generator=g))
    if name == "constant":
        return synthetic._quantise(torch.rand((n, shape[0], 1, 1), generator=g)).expand(n, *shape)
    if name == "interp":
        a, b = synthetic.interp_pairs(n, n, g)
        return ((ins.images[a].to(torch.int16) + ins.images[b].to(torch.int16) + 1) // 2).to(torch.uint8)
    return torch.rot90(ins.images, k=1, dims=(2, 3))


@pytest.mark.parametrize("shape,n", [((1, 8, 8), 50), ((3, 1, 1), 41), ((3, 3, 3), 33)])
@pytest.mark.parametrize("name", synthetic.SYNTHETIC_NAMES)
def test_chunked_synthetic_sets_equal_one_draw(monkeypatch, shape, n, name):
    monkeypatch.setattr(synthetic, "CHUNK", 16)  # several chunks and a short remainder (3 or 27 values per image)
    g = torch.Generator().manual_seed(0)
    ins = ImageSet("x", "test", torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g))
    got = synthetic.make_synthetic(name, ins, seed=4).images
    assert got.dtype == torch.uint8 and torch.equal(got, one_draw(name, ins, 4))
