"""--batch-size auto: halving on out-of-memory (a fake OOM), the cache, and the CPU rule."""

import json

import pytest
import torch

import jembench
import jembench.batch_size as bsz
from jembench import defaults


def fake_gpu(limit):
    """A try_batch that runs out of memory above ``limit`` images, recording the sizes it was asked for."""
    asked = []

    def try_batch(size):
        asked.append(size)
        if size > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return try_batch, asked


def test_largest_fitting_halves_on_out_of_memory():
    try_batch, asked = fake_gpu(300)
    assert bsz.largest_fitting(try_batch, start=4096) == 256
    assert asked == [4096, 2048, 1024, 512, 256]
    try_batch, _ = fake_gpu(0)
    with pytest.raises(torch.OutOfMemoryError):  # not even one image fits: the error is the user's to see
        bsz.largest_fitting(try_batch, start=8)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # older torch raises a plain RuntimeError
        bsz.largest_fitting(lambda s: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")), start=1)


def test_other_errors_are_not_swallowed():
    def broken(size):
        raise ValueError("shape mismatch")
    with pytest.raises(ValueError):
        bsz.largest_fitting(broken)


def test_the_answer_is_cached_per_key_in_memory_and_in_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(bsz, "_MEMORY", {})
    calls = []
    find = lambda: calls.append(1) or 512  # noqa: E731
    assert bsz.cached("k1", tmp_path, find) == 512 and bsz.cached("k1", tmp_path, find) == 512
    assert len(calls) == 1
    assert json.loads((tmp_path / bsz.CACHE_FILE).read_text()) == {"k1": 512}
    monkeypatch.setattr(bsz, "_MEMORY", {})  # a new process: read from the file, no probe
    assert bsz.cached("k1", tmp_path, lambda: 1 / 0) == 512
    assert bsz.cached("k2", tmp_path, lambda: 64) == 64
    assert json.loads((tmp_path / bsz.CACHE_FILE).read_text()) == {"k1": 512, "k2": 64}
    (tmp_path / bsz.CACHE_FILE).write_text("{not json")
    monkeypatch.setattr(bsz, "_MEMORY", {})
    assert bsz.cached("k1", tmp_path, lambda: 128) == 128  # a corrupt file is recomputed and rewritten


def test_auto_is_the_fixed_default_on_cpu_and_recorded(tiny_jem):
    assert bsz.resolve(None, tiny_jem) == defaults.BATCH_SIZE
    assert bsz.resolve(7, tiny_jem) == 7
    for value in ("auto", None):
        res = jembench.clf(tiny_jem, n=4, device="cpu", batch_size=value, progress=False)
        assert res.document["provenance"]["config"]["shared"]["batch_size"] == defaults.BATCH_SIZE
    with pytest.raises(jembench.JembenchError, match="batch-size"):
        jembench.clf(tiny_jem, n=4, device="cpu", batch_size="big", progress=False)


def test_robust_at_auto_stacks_no_more_rows_per_pass_than_the_probe_fitted(tiny_jem, monkeypatch):
    """A fake device that runs out of memory above 40 rows per pass: auto probes 32 rows; robust divides them by
    the rows an image stacks (2 purification copies; full gradients at K=1: times 1 + 2K = 3), so every pass of
    the run fits (without the division the K=1 BPDA-EOT attack stacks 16 x 2 EOT x 2 copies = 64 rows)."""
    limit, seen = 40, []

    def fake_oom(module, args):
        seen.append(args[0].shape[0])
        if args[0].shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(bsz, "PROBE_DEVICES", ("cpu",))
    monkeypatch.setattr(bsz, "_MEMORY", {})
    handle = tiny_jem.net.f.register_forward_pre_hook(fake_oom)
    try:
        res = jembench.robust(tiny_jem, dataset="digits", n=40, eps="0,8/255", purify_steps="0,1", steps=1, eot=2,
                              eval_purifications=2, purify_copies=2, full_grad_max_k=1, probe=False,
                              batch_size="auto", progress=False)
    finally:
        handle.remove()
    k1 = res.evaluations[1].protocol
    assert (k1["batch_size"], k1["batch_size_auto"], k1["batch"], k1["batch_full_grad"]) == (32, True, 16, 5)
    assert res.evaluations[0].protocol["batch"] == 32  # K = 0: one row per image
    after_probe = seen[seen.index(32) + 1:]
    assert after_probe and max(after_probe) <= limit
    assert max(after_probe) == 32  # the budget is used, not just respected
