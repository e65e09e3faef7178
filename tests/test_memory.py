"""Memory bounded in N: synthetic OOD sets are lazy (made per batch from their seeds), equal the one-draw recipe
and are never held whole by an OOD run."""

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


@pytest.mark.parametrize("name", synthetic.SYNTHETIC_NAMES)
def test_lazy_batches_equal_the_eager_set_in_any_order(monkeypatch, name):
    """A synthetic set is made per batch from its seed: every batch (sizes 7 and 64, read in order, backwards and
    skipping ahead, each from a fresh set) equals the slice of the whole set drawn at once."""
    monkeypatch.setattr(synthetic, "CHUNK", 16)  # 150 images: 9 chunks, the last of 22
    g = torch.Generator().manual_seed(1)
    ins = ImageSet("x", "test", torch.randint(0, 256, (150, 3, 2, 2), dtype=torch.uint8, generator=g))
    eager = one_draw(name, ins, 9)
    for bs in (7, 64):
        starts = list(range(0, 150, bs))
        for order in (starts, starts[::-1], starts[1::2] + starts[::2]):
            lazy = synthetic.make_synthetic(name, ins, seed=9)
            for s in order:
                assert torch.equal(lazy.read(s, s + bs), eager[s:s + bs]), (bs, s)
                assert torch.equal(lazy.pixels01(s, s + bs), eager[s:s + bs].float() / 255)
    lazy = synthetic.make_synthetic(name, ins, seed=9)
    assert lazy.fingerprint() == ImageSet(name, "test", eager.contiguous()).fingerprint()
    assert torch.equal(lazy.first(40).images, eager[:40]) and len(lazy.first(40)) == 40
    assert torch.equal(lazy.subset(torch.tensor([149, 3, 77])).images, eager[[149, 3, 77]])


def test_an_ood_run_over_four_synthetic_sets_never_holds_one_whole(monkeypatch, tiny_jem):
    """OOD against noise, uniform, constant and interp (logit and gradient scores): no set is ever made whole, no
    read spans more than one batch, and each set keeps at most one chunk of images (plus ~5 KB per chunk of
    generator states and interp's pair indices)."""
    import jembench
    import jembench.data.imageset as imageset
    from jembench.data.lazyset import LazyImageSet

    monkeypatch.setattr(synthetic, "CHUNK", 16)
    monkeypatch.setattr(imageset, "HASH_BLOCK", 8)
    monkeypatch.setattr(LazyImageSet, "images", property(lambda self: pytest.fail("a lazy set was made whole")))
    made, reads = [], []
    init, read = synthetic.Chunks.__init__, synthetic.Chunks.read
    monkeypatch.setattr(synthetic.Chunks, "__init__", lambda self, *a: made.append(self) or init(self, *a))
    monkeypatch.setattr(synthetic.Chunks, "read", lambda self, lo, hi: reads.append(hi - lo) or read(self, lo, hi))
    res = jembench.ood(tiny_jem, dataset="digits", n=100, out="synthetic", scores="logp,gradnorm", bootstrap=0,
                       figures=False, batch_size=8, progress=False)
    assert [s["name"] for s in res.evaluations[0].protocol["out_sets"]] == ["noise", "uniform", "constant", "interp"]
    assert len(made) == 4 and reads and max(reads) <= 8
    assert all(len(c.last[1]) < 2 * 16 and len(c.states) <= c.count for c in made)
