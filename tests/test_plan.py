"""--plan: the passes each evaluator declares equal the passes a hook counts in a real run, and results.json
records them; the plan runs nothing and writes nothing."""

import json

import pytest
from click.testing import CliRunner

import jembench
from jembench.cli import main

SMALL = {
    "clf": dict(dataset="digits", n=20, refine_steps=2, batch_size=8),
    "calib": dict(dataset="digits", n=20, bootstrap=0, batch_size=8),
    "ood": dict(dataset="digits", n=16, out="noise,rotated", scores="logp,gradnorm", bootstrap=0, figures=False,
                batch_size=8),
    "robust": dict(dataset="digits", n=6, eps="0,8/255", purify_steps="0,1", steps=2, eot=2, eval_purifications=2,
                   purify_copies=2, full_grad_max_k=0, batch_size=4),
    "gen": dict(n=8, protocol="sgld,pcd,mala", warmup=1, steps=3, pcd_rounds=2, pcd_batch=4, metrics="is", isc_splits=2,
                batch_size=8, ladder="1,2"),
    "density": dict(dataset="digits", n=6, chains=4, distributions=3, transitions=2, reverse_chains=2,
                    dsm_sigmas="0.1", ssm_projections=1, batch_size=4),
}


class Counter:
    """Images through the model's trunk (forward) and gradients back through it (backward), by module hooks."""

    def __init__(self, model):
        self.forward = self.backward = 0
        trunk = model.net.f
        self.handles = [trunk.register_forward_pre_hook(self._fwd),
                        trunk.register_full_backward_hook(self._bwd)]

    def _fwd(self, module, args):
        self.forward += args[0].shape[0]

    def _bwd(self, module, grad_in, grad_out):
        self.backward += grad_out[0].shape[0]

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("name", list(SMALL))
def test_plan_totals_equal_the_passes_a_hook_counts(name, tiny_jem, tmp_path, forward_count):
    api = getattr(jembench, name)
    plan = api(tiny_jem, plan=True, **SMALL[name])
    assert forward_count() > 0  # the plan's throughput probe runs the model...
    assert not any(tmp_path.iterdir())  # ...but nothing of the evaluation is written
    counter = Counter(tiny_jem)
    result = api(tiny_jem, progress=False, out_dir=tmp_path / "out", **SMALL[name])
    counter.remove()
    assert (plan.total["forward"], plan.total["backward"]) == (counter.forward, counter.backward)
    recorded = json.loads((tmp_path / "out" / "results.json").read_text())["evaluations"]
    for ev in recorded:  # every evaluation records its step's passes per image (RobustBench's name included)
        passes = ev["provenance"]["passes"]
        assert (passes["forward"], passes["backward"]) == (counter.forward, counter.backward)
        assert passes["number_forward_passes"] == pytest.approx(counter.forward / passes["images"])
    assert len(recorded) == len(result.evaluations)
    if name == "robust":  # the attack rows' own counters agree with the declared attack parts
        rows = [r for e in result.evaluations for r in e.rows if r["attack"] not in ("clean", "worst")]
        parts = {c["part"].split(" ", 2)[-1]: c for c in plan.rows[0]["parts"]}
        row = next(r for r in rows if r["attack"] == "bpda-eot" and r["eps"] > 0)
        part = parts[f"eps={row['eps']:.4g} bpda-eot"]
        assert row["fwd_per_image"] == pytest.approx(part["forward"] / part["images"])


def test_run_all_plan_pays_a_shared_pass_once_and_matches_the_run(tmp_path):
    model = jembench.load("checkpoints/jem-digits.pt")
    args = dict(overrides={"evaluators": "clf,calib,ood", "n": 24, "ood.out": "noise", "ood.scores": "logp,msp",
                           "ood.bootstrap": 0, "calib.bootstrap": 0, "ood.figures": False}, html=False)
    plan = jembench.run_all(model, plan=True, **args)
    assert [r["forward"] for r in plan.rows] == [24, 0, 24]  # calib and ood's in-set read clf's pass
    counter = Counter(model)
    jembench.run_all(model, out_dir=tmp_path / "run", progress=False, **args)
    counter.remove()
    assert plan.total["forward"] == counter.forward and plan.total["backward"] == counter.backward == 0
    again = jembench.run_all(model, plan=True, out_dir=tmp_path / "run", **args)  # a resumed run: nothing left
    assert again.total["forward"] == 0 and all(r["step"].endswith("(done, resumed)") for r in again.rows)


def test_plan_on_the_command_line_and_as_json(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run-all", "checkpoints/jem-digits.pt", "--plan", "--json", "--out-dir", str(out),
                                  "--preset", "paper", "--only", "clf,robust"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    steps = [row["step"] for row in doc["rows"]]
    assert steps == ["clf", "robust-linf", "robust-l2"] and not out.exists()
    assert doc["total"]["seconds"] > 0 and doc["total"]["attack_steps"] == sum(x["attack_steps"] for x in doc["rows"])
    text = CliRunner().invoke(main, ["ood", "checkpoints/jem-digits.pt", "--plan", "--quiet"])
    assert text.exit_code == 0 and text.stdout.splitlines()[0].split()[:3] == ["step", "checkpoint", "images"]
    assert "est. time" in text.stdout and "probe jem-digits on cpu" in text.stdout
