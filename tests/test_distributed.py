"""torchrun sharding (jembench.distributed): blocks of sample indices, gathering in index order, and sharded
per-sample passes equal to one process. Two gloo processes on CPU, tiny shapes; the whole demo under torchrun is
tests/dist_check.py (run by CI)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jembench import distributed
from jembench.distributed import World

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, torch
from jembench import distributed
from jembench.data.imageset import ImageSet
from jembench.forward import ForwardCache
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet
from jembench.scores import gradnorm_scores

w = distributed.init(torch.device("cpu"))
torch.manual_seed(0)
model = HybridModel(JEMNet(10, 1, "none", 1, 10), ModelInfo(family="jembench", source_format="jembench",
    architecture="wrn", n_classes=10, in_channels=1, image_size=(8, 8), depth=10, width=1, norm="none",
    dataset="digits", name="tiny")).eval()
g = torch.Generator().manual_seed(1)
images = ImageSet("t", "test", torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8, generator=g),
                  torch.randint(0, 10, (7,), generator=g), 10)
cache = ForwardCache()
fp = cache.get(model, images, sigma=0.1, seed=3, batch_size=3, progress=False)
grad = gradnorm_scores(model, images, sigma=0.1, seed=3, batch_size=2, progress=False)
flags = distributed.gather(torch.tensor([True, False] if w.rank == 0 else [True]))
out = {"world": [w.size, w.rank, w.backend], "calls": cache.model_calls, "shard": distributed.shard(7),
       "logits": fp.logits.tolist(), "log_px": fp.log_px.tolist(), "grad": grad.tolist(), "flags": flags.tolist(),
       "spans": [distributed.shard(7, 3), distributed.shard(7, 2)], "total": distributed.total(w.rank + 1),
       "main": distributed.from_main(f"rank{w.rank}")}
json.dump(out, open(sys.argv[1] + f".{w.rank}", "w"))
""" + r"""
from jembench.evaluators.base import Context, SharedSettings
from jembench.evaluators.density import DensitySettings, run as density
from jembench.evaluators.gen_chains import mean_energy
from jembench.generation import generate, make_protocol
from jembench.sampling.mcmc import MHConfig

def tiny(norm):
    torch.manual_seed(0)
    return HybridModel(JEMNet(10, 1, norm, 1, 10), ModelInfo(family="jembench", source_format="jembench",
        architecture="wrn", n_classes=10, in_channels=1, image_size=(8, 8), depth=10, width=1, norm=norm,
        dataset="digits", name="tiny")).eval()

def chains(s):
    t = s.trace
    return {"x": s.x.tolist(), "energy": t.energy.tolist(), "steps": t.steps.tolist(), "observed": s.observed,
            "pred": t.predicted.tolist() if t.predicted is not None else None,
            "acc": t.acceptance.tolist() if t.acceptance is not None else None}

protocols = {"sgld": (model, make_protocol("sgld", steps=3)),
             "jem++ bn": (tiny("batch"), make_protocol("jem++", steps=2, init="uniform")),
             "mala": (model, make_protocol("mala", steps=3, warmup=2)),
             "pcd": (model, make_protocol("pcd", steps=2, pcd_rounds=3, pcd_batch=5)),
             "pcd mh": (model, make_protocol({"name": "pcd-mh", "pcd_rounds": 2, "pcd_batch": 5,
                                              "sampler": MHConfig(steps=2)})),
             "pcd mh warm-up": (model, make_protocol({"name": "pcd-mh", "pcd_rounds": 2, "pcd_batch": 5,
                                                      "sampler": MHConfig(steps=2, warmup=1)}))}
out = {k: chains(generate(m, p, 7, seed=1, batch_size=2, progress=False)) for k, (m, p) in protocols.items()}
model.replay_buffer = torch.rand((9, 1, 8, 8), generator=g) * 2 - 1
top = generate(model, make_protocol("buffer-top", buffer_top=0.3), None, batch_size=2, progress=False)
out["buffer-top"] = {"images": top.images.tolist(), "energy": mean_energy(model, top.x, 2)}
s = DensitySettings(chains=5, distributions=4, reverse_chains=4, dsm_sigmas=(0.1,), ssm_projections=1)
(ev,) = density([model], s, SharedSettings(dataset=images, batch_size=3), Context("cpu", None, progress=False))
out["density"] = ev.metrics
json.dump(out, open(sys.argv[1] + f".chains.{w.rank}", "w"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The worker's outputs in one process and on two gloo ranks: ``(one, [rank 0, rank 1])``."""
    tmp = tmp_path_factory.mktemp("dist")
    return _run(tmp / "one", 1)[0], _run(tmp / "two", 2)


def _run(tmp_path: Path, world: int) -> list[dict]:
    tmp_path.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": port, "WORLD_SIZE": str(world)}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "out")], env={**env, "RANK": str(r),
                                                                                        "LOCAL_RANK": str(r)})
             for r in range(world)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    return [{**json.loads((tmp_path / f"out.{r}").read_text()),
             "chains": json.loads((tmp_path / f"out.chains.{r}").read_text())} for r in range(world)]


def test_two_gloo_ranks_gather_the_single_process_values_in_index_order(worlds):
    one, (r0, r1) = worlds
    assert one["world"] == [1, 0, None] and r0["world"] == [2, 0, "gloo"] and r1["world"] == [2, 1, "gloo"]
    assert (r0["shard"], r1["shard"]) == ([0, 3], [3, 7])
    assert (one["calls"], r0["calls"], r1["calls"]) == (3, 1, 2)  # each rank passes its own batches only
    assert (r0["spans"], r1["spans"]) == ([[0, 3], [0, 4]], [[3, 7], [4, 7]])  # whole batches of 3 and 2 per rank
    for r in (r0, r1):  # every rank holds the whole, bit-identical to one process (the same batches)
        assert r["logits"] == one["logits"] and r["log_px"] == one["log_px"] and r["grad"] == one["grad"]
        assert r["flags"] == [True, False, True] and r["total"] == 3 and r["main"] == "rank0"


def test_sharded_chains_and_ais_equal_one_process_bit_for_bit(worlds):
    """Fresh chains (SGLD with its trace, JEM++ with BatchNorm batch statistics, MALA with warm-up: whole batches
    of 2 of 7 chains per rank), PCD rounds (SGLD and MH: each round's 5 draws in batches of 2 split over ranks; MH
    with warm-up: coupled, every rank runs the round), the buffer-top selection pass and the ladder's mean energy
    (whole batches) and
    density (9 AIS chains, forward and reverse, in batches of 3; score matching on 7 images): every rank holds
    exactly the single-process samples, traces, acceptance, counters and metrics."""
    one, ranks = worlds
    want = one["chains"]
    assert set(want) == {"sgld", "jem++ bn", "mala", "pcd", "pcd mh", "pcd mh warm-up", "buffer-top", "density"}
    assert 0 < len(want["buffer-top"]["images"]) < 9
    assert len(want["sgld"]["x"]) == 7 and len(want["sgld"]["energy"][0]) == 7 and want["sgld"]["pred"]
    assert len(want["pcd"]["energy"]) == 3 and len(want["pcd"]["energy"][0]) == 5  # rounds x draws
    assert want["mala"]["acc"] is not None and "mcmc/step_size_min" in want["mala"]["observed"]
    assert "pcd/chains_never_advanced" in want["pcd mh"]["observed"]
    assert {"ais/log_z", "ais/log_z_upper", "sm/dsm/0.1", "sm/ssm"} <= set(want["density"])
    for r in ranks:
        for key, value in want.items():
            assert r["chains"][key] == value, key


@pytest.mark.parametrize("n, align, size, blocks", [
    (7, 1, 2, [(0, 3), (3, 7)]), (10, 4, 2, [(0, 4), (4, 10)]), (10, 4, 3, [(0, 4), (4, 8), (8, 10)]),
    (2, 1, 3, [(0, 0), (0, 1), (1, 2)]), (0, 1, 2, [(0, 0), (0, 0)])])
def test_shards_are_contiguous_aligned_blocks_covering_every_sample_once(monkeypatch, n, align, size, blocks):
    got = []
    for rank in range(size):
        monkeypatch.setattr(distributed, "_WORLD", World(size, rank, rank, "gloo"))
        got.append(distributed.shard(n, align))
    assert got == blocks
    assert all(lo % align == 0 for lo, _ in got)


def test_a_single_process_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init() == World() and distributed.is_main() and distributed.shard(5) == (0, 5)
    t = torch.arange(4)
    assert distributed.gather(t) is t and distributed.total(3) == 3 and distributed.from_main("x") == "x"
    assert distributed.describe()["world_size"] == 1
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda")


def test_dist_check_catches_a_changed_metric():
    sys.path.insert(0, str(ROOT / "tests"))
    from dist_check import EXPECTED, differences

    expected = json.loads(EXPECTED.read_text())
    doc = {"evaluations": [{"evaluator": e["evaluator"], "checkpoint": {"name": e["checkpoint"]},
                            "metrics": dict(e["metrics"]), "intervals": dict(e["intervals"])} for e in expected]}
    assert differences(doc, expected) == []
    doc["evaluations"][0]["metrics"]["accuracy"] += 1e-4
    assert differences(doc, expected) == ["clf (jem-digits) accuracy: " + f"{expected[0]['metrics']['accuracy'] + 1e-4}"
                                          f" != {expected[0]['metrics']['accuracy']}"]
