"""run-all: every evaluator, resume after an interruption, failures shown and signalled, presets, escaping."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import jembench.evaluators.run_all as run_all_module
from jembench.cli import main
from jembench.errors import JembenchError
from jembench.evaluators.registry import REGISTRY, Registry
from jembench.evaluators.run_all import run_all
from jembench.figures import close, new_figure
from jembench.models import save_native
from jembench.presets import EVALUATORS, get_preset
from jembench.results import Evaluation, read_results
from jembench.io import atomic_write_bytes, figure_png

ROOT = Path(__file__).resolve().parent.parent
DEMO = [ROOT / "checkpoints" / "jem-digits.pt", ROOT / "checkpoints" / "baseline-digits.pt"]
# the quick preset, smaller still, for a test on a random tiny model
TINY = {"n": 48, "calib.bootstrap": 20, "ood.bootstrap": 20, "ood.out": "noise,uniform", "ood.scores": "logp,msp",
        "robust.n": 8, "robust.steps": 2, "robust.eps_linf": "0,8/255", "robust.purify_steps": "0",
        "gen.n": 32, "gen.steps": 2, "gen.metrics": "fid", "density.n": 8, "density.chains": 4,
        "density.distributions": 5, "density.reverse_chains": 2, "density.dsm_sigmas": "0.1"}


def tiny_checkpoint(path: Path, name: str, model) -> Path:
    model.info.name = name
    save_native(model, path)
    return path


def fake_evaluators(monkeypatch, calls: dict, raise_in: dict):
    """Replace every registered evaluator's run with a fast fake that writes one figure; ``raise_in[name]`` is
    raised there."""
    def make(name):
        def fn(models, settings, shared, ctx):
            calls[name] = calls.get(name, 0) + 1
            if name in raise_in:
                raise raise_in[name]
            fig, ax = new_figure(2, 2)
            ax.plot([0, 1], [1, 0])
            atomic_write_bytes(Path(ctx.out_dir) / f"{name}.png", figure_png(fig))
            close(fig)
            ev = Evaluation(name, models[0].info.to_dict(),
                            {"dataset": "digits", "seed": shared.seed, "settings": settings.to_dict()},
                            {f"{name}_metric": 0.5}, artifacts={"figure": f"{name}.png"}, wall_time_s=0.01)
            return [ev]
        return fn
    fakes = Registry([replace(spec, run=make(name)) for name, spec in REGISTRY.items()])
    monkeypatch.setattr(run_all_module, "REGISTRY", fakes)


def test_resume_after_interruption_repeats_no_work(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    calls: dict = {}
    fake_evaluators(monkeypatch, calls, {"ood": KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        run_all([ckpt], out_dir=tmp_path / "out", device="cpu", progress=False)
    assert calls == {"clf": 1, "calib": 1, "ood": 1}
    assert not (tmp_path / "out" / "results.json").exists()  # nothing half-written
    assert len(list((tmp_path / "out" / ".parts").glob("*.json"))) == 2

    fake_evaluators(monkeypatch, calls, {})
    result = run_all([ckpt], out_dir=tmp_path / "out", device="cpu", progress=False)
    assert calls == {"clf": 1, "calib": 1, "ood": 2, "robust": 1, "gen": 1, "density": 1}
    assert result.resumed == ["clf (tiny)", "calib (tiny)"] and not result.failed
    doc = read_results(tmp_path / "out" / "results.json")
    assert [e["evaluator"] for e in doc["evaluations"]] == list(EVALUATORS)
    assert all((tmp_path / "out" / e["artifacts"]["figure"]).is_file() for e in doc["evaluations"])

    run_all([ckpt], out_dir=tmp_path / "out", device="cpu", progress=False)  # a third run: everything resumed
    assert calls == {"clf": 1, "calib": 1, "ood": 2, "robust": 1, "gen": 1, "density": 1}
    run_all([ckpt], out_dir=tmp_path / "out", device="cpu", progress=False, overrides={"calib.bins": 20})
    assert calls["calib"] == 2 and calls["clf"] == 1  # a changed setting reruns only the evaluator it belongs to


def test_failed_evaluator_is_reported_and_exit_code_says_so(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    calls: dict = {}
    fake_evaluators(monkeypatch, calls, {"robust": RuntimeError("attack <diverged>")})
    res = CliRunner().invoke(main, ["run-all", str(ckpt), "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    assert res.exit_code == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("jembench: run-all: 1 step(s) failed: robust-linf (tiny): RuntimeError: attack <diverged>")
    assert sum("attack <diverged>" in line for line in res.stderr.splitlines()) == 1, res.stderr  # one line, why
    doc = read_results(tmp_path / "out" / "results.json")
    failed = [e for e in doc["evaluations"] if e["status"] == "failed"]
    assert [e["evaluator"] for e in failed] == ["robust"] and "attack <diverged>" in failed[0]["error"]
    assert {e["evaluator"] for e in doc["evaluations"] if e["status"] == "ok"} == {"clf", "calib", "ood", "gen",
                                                                                         "density"}
    html = (tmp_path / "out" / "index.html").read_text()
    assert "attack &lt;diverged&gt;" in html and "Failures" in html
    # the failure is not stored as done: the next run retries it, and only it
    fake_evaluators(monkeypatch, calls, {})
    assert not run_all([ckpt], out_dir=tmp_path / "out", device="cpu", progress=False).failed
    assert calls == {"clf": 1, "calib": 1, "ood": 1, "robust": 2, "gen": 1, "density": 1}


def test_hostile_checkpoint_name_is_escaped(tmp_path, tiny_jem, monkeypatch):
    hostile = "<script>alert(1)</script>"
    path = tmp_path / f"{hostile}.pt"  # a folder "<script>alert(1)<" holding "script>.pt"
    path.parent.mkdir(parents=True)
    tiny_checkpoint(path, hostile, tiny_jem)
    fake_evaluators(monkeypatch, {}, {})
    result = run_all([str(path)], out_dir=tmp_path / "out", device="cpu", progress=False)
    html = result.html.read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert all("<" not in p.name for p in (tmp_path / "out").rglob("*"))  # file names made safe too


def test_provenance_has_wall_times_sha256_and_preset(tmp_path, tiny_jem, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", "tiny", tiny_jem)
    fake_evaluators(monkeypatch, {}, {})
    doc = run_all([ckpt], out_dir=tmp_path / "out", device="cpu", seed=7, progress=False).to_dict()
    prov = doc["provenance"]
    assert doc["schema"] == "jembench.results" and doc["schema_version"] >= 1
    assert prov["seed"] == 7 and prov["config"]["preset"]["name"] == "quick"
    steps = ("clf", "calib", "ood", "robust-linf", "gen", "density")
    assert set(prov["wall_time_s"]) == {f"{e}/0-tiny" for e in steps} | {"total", "this_run"}
    # a one-evaluation step reports the step's wall time (data, forward pass, writing), not just its own metric time
    by_step = {e["evaluator"]: e["wall_time_s"] for e in doc["evaluations"]}
    assert by_step["clf"] == pytest.approx(prov["wall_time_s"]["clf/0-tiny"], abs=1e-3) and by_step["clf"] != 0.01
    from jembench.models import file_sha256
    assert {e["checkpoint"]["sha256"] for e in doc["evaluations"]} == {file_sha256(ckpt)}


def test_presets_and_overrides():
    quick, paper = get_preset("quick"), get_preset("paper")
    assert paper.sigma == 0.03 and paper.robust.steps == 40 and paper.robust.n == 300 and paper.gen.n == 10000
    assert set(paper.robust.threat) == {"linf", "l2"} and 10 in paper.robust.purify_steps
    p = quick.override({"sigma": "0.03", "robust.eps_linf": "0,8/255", "n": "none", "evaluators": "clf,ood"})
    assert p.sigma == 0.03 and p.robust.eps_linf == (0.0, 8 / 255) and p.n is None and p.evaluators == ("clf", "ood")
    assert quick.sigma == 0.0 and quick.robust.eps_linf != p.robust.eps_linf  # the original is untouched
    with pytest.raises(JembenchError, match="unknown preset field"):
        quick.override({"robust.epsilon": "1"})
    with pytest.raises(JembenchError, match="cannot read"):
        quick.override({"gen.n": "many"})
    with pytest.raises(JembenchError, match="unknown evaluator"):
        quick.override({"evaluators": "clf,nope"})


def test_run_all_end_to_end_with_real_evaluators(tmp_path, tiny_jem, monkeypatch):
    """Every real evaluator on the bundled demo checkpoints (tiny native ones when absent), the quick preset made
    smaller still: results, CSV tables, per-sample arrays, report."""
    caches = []

    class RecordingCache(run_all_module.ForwardCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            caches.append(self)

    monkeypatch.setattr(run_all_module, "ForwardCache", RecordingCache)
    if all(p.exists() for p in DEMO):
        a, b = DEMO
    else:
        a = tiny_checkpoint(tmp_path / "jem-digits.pt", "jem-digits", tiny_jem)
        torch.manual_seed(1)
        for p in tiny_jem.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
        b = tiny_checkpoint(tmp_path / "baseline-digits.pt", "baseline-digits", tiny_jem)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run-all", str(a), str(b), "--out-dir", str(out), "--device", "cpu", "--json"]
                             + [f"--set={k}={v}" for k, v in TINY.items()])
    doc = json.loads(res.stdout)
    failed = {(e["evaluator"], e["error"]) for e in doc["evaluations"] if e["status"] != "ok"}
    assert res.exit_code == 0 and not failed, (res.stderr, failed)
    assert {e["evaluator"] for e in doc["evaluations"]} == set(EVALUATORS)
    assert (out / "index.html").is_file() and (out / "tables" / "Accuracy.csv").is_file()  # named by title
    assert list(out.rglob("*.npz"))  # per-sample arrays
    clf_csv = (out / "tables" / "Accuracy.csv").read_text()
    assert "jem-digits" in clf_csv and "baseline-digits" in clf_csv
    # accuracy, calibration and OOD share one cache: one pass per checkpoint over the N test images
    (cache,) = caches
    test_passes = [fp for fp in cache.memory.values() if fp.protocol["dataset"] == "digits"
                   and fp.protocol["split"] == "test" and fp.protocol["n"] == TINY["n"]]
    assert len(test_passes) == 2 and doc["provenance"]["forward_model_calls"] == cache.model_calls


def test_offline_generation_settings_reach_the_gen_step():
    from click.testing import CliRunner

    from jembench.cli import main
    from jembench.presets import get_preset

    def STEPS_gen(preset):  # (variant, settings as a dict) of each run-all step of gen
        return [(variant, settings.to_dict()) for variant, settings in REGISTRY["gen"].steps(preset.gen)]

    preset = get_preset("paper").override({"gen.fid_weights": "/w/weights-inception.pth", "gen.offline": "true"})
    [(_, kwargs)] = STEPS_gen(preset)
    assert kwargs["fid_weights"] == "/w/weights-inception.pth" and kwargs["offline"] is True
    assert STEPS_gen(get_preset("paper"))[0][1]["offline"] is False
    assert "--offline" in CliRunner().invoke(main, ["run-all", "--help"]).output
