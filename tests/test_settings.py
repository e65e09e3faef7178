"""One source of truth: every option of every registered evaluator is settable, with the same effect, through the
Python API, the evaluator's command and run-all's --set (command line and API); every bad value is one line, exit
status 2, before any checkpoint is loaded. Parametrised over the registry, not a hand list."""

import inspect
import json
from fnmatch import fnmatchcase
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import jembench
import jembench.evaluators.run_all as run_all_module
from jembench.cli import main
from jembench.errors import JembenchError
from jembench.evaluators.base import SharedSettings, no_preflight
from jembench.evaluators.registry import REGISTRY
from jembench.io import to_jsonable
from jembench.presets import PRESETS, field_names, get_preset
from jembench.settings import Field, SettingError, Spelling

# fields whose value only makes sense together with another one (a cross-field rule of the settings class)
NEEDS = {("gen", "pcd_rounds"): {"protocol": "pcd"}, ("gen", "pcd_batch"): {"protocol": "pcd"},
         ("gen", "reinit_freq"): {"protocol": "pcd"}, ("gen", "temperature"): {"protocol": "mala"},
         ("gen", "warmup"): {"protocol": "mala"}, ("gen", "target_accept"): {"protocol": "mala"}}


def sample(f: Field) -> tuple[str, object]:
    """A valid non-default value of ``f``: (as typed on a command line, as the parsed value)."""
    allowed = f.spec.allowed()
    if f.item_type is bool:
        return ("false", False) if f.default else ("true", True)
    if allowed:
        others = [c for c in allowed if c not in (f.default if f.is_list else (f.default,))]
        pick = others[-1] if others else allowed[0]  # a list defaulting to every choice: one of them
        return pick, ((pick,) if f.is_list else pick)
    if f.item_type is int:
        low = int(f.spec.min if f.spec.min is not None else 0)
        value = (f.default + 1) if isinstance(f.default, int) else low + 2
        return (f"{low},{low + 2}", (low, low + 2)) if f.is_list else (str(value), value)
    if f.item_type is float:
        top = f.spec.max if f.spec.max is not None else 2.0
        value = 0.25 * top
        if f.is_list:
            first = 0.0 if f.spec.above is None else value / 2  # a list of positive values (noise levels)
            return f"{first},{value}", (first, value)
        return str(value), value
    text = {"out": "noise", "feature_extractor": "inception", "split": "train"}.get(f.name, "/tmp/jembench-x")
    return text, ((text,) if f.is_list else text)


CASES = [pytest.param(name, f, id=f"{name}.{f.name}")
         for name, spec in REGISTRY.items() for f in spec.settings.fields()]


def _context(name: str, f: Field) -> dict:
    return NEEDS.get((name, f.name), {})


@pytest.mark.parametrize("name, f", CASES)
def test_every_option_has_the_same_effect_through_api_command_and_set(name, f, tiny_jem, monkeypatch):
    spec = REGISTRY[name]
    text, value = sample(f)
    extra = _context(name, f)

    # 1. the Python API (jembench.<name>), its run replaced by a recorder
    seen = []
    monkeypatch.setattr(run_all_module, "REGISTRY", REGISTRY)
    fake = replace(spec, run=lambda models, settings, shared, ctx: seen.append(settings) or [],
                   preflight=no_preflight)
    fake.call(tiny_jem, **{f.name: text, **extra})
    api = seen[-1]
    assert getattr(api, f.name) == value
    assert inspect.signature(getattr(jembench, name)).parameters[f.name].default == f.default

    # 2. the command: its generated option parses to the same settings
    command = main.get_command(None, name)
    flag = "--" + f.name.replace("_", "-")
    argv = [flag] if f.item_type is bool and value else [f"--no-{flag[2:]}"] if f.item_type is bool else [flag, text]
    argv += [a for k, v in extra.items() for a in ("--" + k.replace("_", "-"), v)]
    params = command.make_context(name, argv).params
    values = {k: v for k, v in params.items()
              if v not in (None, ()) and k not in ("as_json", "out_dir", "save_raw", "wait", "quiet", "plan")}
    cli, _ = spec.parse(values)
    assert cli == api

    # 3. run-all --set, through the preset (API) and the command line
    preset = get_preset("quick").override({f"{name}.{k}": v for k, v in {f.name: text, **extra}.items()})
    assert getattr(preset.settings(name), f.name) == value
    captured = {}

    def fake_run_all(checkpoints, *, preset, overrides, **kw):
        captured["settings"] = get_preset(preset).override(overrides).settings(name)
        raise JembenchError("stop here")

    monkeypatch.setattr(run_all_module, "run_all", fake_run_all)
    sets = [f"--set={name}.{k}={v}" for k, v in {f.name: text, **extra}.items()]
    result = CliRunner().invoke(main, ["run-all", "some.pt", *sets])
    assert result.exit_code == 2 and "stop here" in result.stderr
    assert getattr(captured["settings"], f.name) == value
    assert f"{name}.{f.name}" in field_names()


def test_run_all_help_lists_every_field_with_its_default():
    text = CliRunner().invoke(main, ["run-all", "--help"]).output
    for key in field_names():
        if key != "evaluators":
            assert f"  {key} (" in text, key
    assert "calib.bins (int) [15" in text and "robust.eot (int) [5; quick: 2]" in text


def test_presets_are_instances_of_the_settings_classes_and_valid():
    for make in PRESETS.values():
        preset = make()
        preset.validate()
        for name, spec in REGISTRY.items():
            assert isinstance(preset.settings(name), spec.settings)
    assert get_preset("quick").settings("robust").eps_linf == (0.0, 2 / 255, 8 / 255)


def test_every_command_option_is_a_settings_field():
    """No hand-written option: a command takes its settings fields, the shared fields it declares, output, --quiet
    (progress) and --plan."""
    for name, spec in REGISTRY.items():
        command = main.get_command(None, name)
        fields = {f.name for f in spec.settings.fields()} | set(spec.shared)
        names = {p.name for p in command.params} - {"checkpoints", "as_json", "out_dir", "save_raw", "wait", "quiet",
                                                    "plan"}
        assert names == fields, name


BAD = [  # (argv, what the one line must say); every case must fail before any checkpoint is loaded
    (["clf", "--sigma", "-1"], "--sigma must be >= 0, got -1"),
    (["gen", "--steps", "-1"], "--steps must be >= 0, got -1"),
    (["gen", "--n", "0"], "--n must be >= 1, got 0"),
    (["robust", "--n", "-3"], "--n must be >= 1, got -3"),
    (["clf", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["ood", "--device", "foo"], "--device foo"),
    (["calib", "--bins", "0"], "--bins must be >= 1, got 0"),
    (["calib", "--bins", "many"], "--bins many: cannot read it as int"),
    (["robust", "--eps", "0,8"], "--eps 0.0,8.0: L-inf budgets"),
    (["robust", "--eps-linf", "2"], "--eps-linf must be >= 0 and <= 1, got 2"),
    (["ood", "--score", "px"], "unknown OOD score 'px'"),
    (["robust", "--attacks", "fgsm"], "unknown attack 'fgsm'"),
    (["gen", "--protocol", "nope"], "unknown generation protocol 'nope'"),
    (["gen", "--metrics", "is,xx"], "unknown metric 'xx'"),
    (["gen", "--pcd-rounds", "5"], "--pcd-rounds set but no PCD protocol chosen: add --protocol pcd"),
    (["gen", "--temperature", "2"], "--temperature set but no MH / MALA protocol chosen: add --protocol mala"),
    (["gen", "--protocol", "mala", "--noise", "0.1"], "--noise set but mh / mala have no free noise"),
    (["gen", "--protocol", "mala", "--step-size", "0"], "--step-size 0: mh / mala need a step > 0"),
    (["gen", "--protocol", "mh", "--bn-train"], "--bn-train set but mh / mala always run BatchNorm in eval mode"),
    (["gen", "--protocol", "sgld,sgld"], "--protocol sgld,sgld: names a protocol twice"),
    (["run-all", "--preset", "nope"], "'nope' is not one of 'quick', 'paper'"),
    (["run-all", "--set", "calib.bins=0"], "--set calib.bins must be >= 1, got 0"),
    (["run-all", "--set", "ood.temperature=x"], "--set ood.temperature=x: cannot read it as float"),
    (["run-all", "--set", "gen.pcd_rounds=5"], "--set gen.pcd_rounds set but no PCD protocol chosen"),
    (["run-all", "--set", "robust.epsilon=1"], "unknown preset field"),
    (["run-all", "--set", "n=0"], "--set n must be >= 1, got 0"),
    (["run-all", "--only", "clf,nope"], "unknown evaluator(s) nope"),
    (["run-all", "--device", "foo"], "--device foo"),
    (["run-all", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["run-all", "--sigma", "-0.1"], "must be >= 0, got -0.1"),
]


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_invalid_values_exit_2_in_one_line_before_any_model_pass(argv, says, tmp_path, forward_count):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*argv, "checkpoints/jem-digits.pt", "--out-dir", str(out)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("jembench: error: ") and says in lines[0], result.stderr
    assert not out.exists() and forward_count() == 0  # nothing written or computed


@pytest.mark.parametrize("name, values", [("clf", {"sigma": -1}), ("calib", {"bins": 0}), ("ood", {"scores": "px"}),
                                          ("robust", {"eot": 0}), ("gen", {"steps": -1}), ("clf", {"nope": 1})])
def test_the_api_raises_the_same_one_line_error_before_any_pass(name, values, forward_count):
    with pytest.raises(JembenchError) as err:
        getattr(jembench, name)("checkpoints/jem-digits.pt", **values)
    assert "\n" not in str(err.value) and forward_count() == 0


def test_spelling_follows_where_the_option_was_written():
    f = SharedSettings.field("batch_size")
    for spell, says in ((Spelling(), "--batch-size must be"), (Spelling(""), "--set batch_size must be"),
                        (Spelling("clf"), "--set clf.batch_size must be")):
        with pytest.raises(SettingError, match=says):
            SharedSettings.build({f.name: 0}, spell=spell)


def test_gen_takes_one_checkpoint_as_well_as_a_list(tiny_jem, tmp_path):
    single = jembench.gen(tiny_jem, n=8, steps=1, metrics="is", isc_splits=2, progress=False)
    listed = jembench.gen([tiny_jem], n=8, steps=1, metrics="is", isc_splits=2, progress=False)
    assert single.evaluations[0].metrics == listed.evaluations[0].metrics


def test_run_all_writes_each_step_once(tmp_path, tiny_jem, monkeypatch):
    """A step's results are written to its part file and to results.json, and nowhere else."""
    from jembench.models import save_native

    tiny_jem.info.name = "tiny"
    ckpt = tmp_path / "tiny.pt"
    save_native(tiny_jem, ckpt)
    out = tmp_path / "out"
    jembench.run_all([ckpt], out_dir=out, device="cpu", progress=False, html=False,
                     overrides={"evaluators": "clf,calib", "n": 20, "calib.bootstrap": 0})
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == sorted(
        [".parts/" + p.name for p in (out / ".parts").glob("*.json")] + ["results.json"])
    assert len(list((out / ".parts").glob("*.json"))) == 2


def test_timings_live_in_provenance_not_in_metrics(tiny_jem):
    ev = jembench.gen(tiny_jem, n=8, steps=1, metrics="is", progress=False).evaluations[0]
    assert not any(m.startswith("time/") for m in ev.metrics)
    assert ev.provenance["time"]["sampling_s"] >= 0
    assert json.loads(json.dumps(ev.to_dict()))["provenance"]["time"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """run-all --preset quick on the two bundled checkpoints (the README's main job)."""
    root = Path(__file__).resolve().parent.parent
    return jembench.run_all([root / "checkpoints" / "jem-digits.pt", root / "checkpoints" / "baseline-digits.pt"],
                            preset="quick", out_dir=tmp_path_factory.mktemp("demo"), device="cpu", progress=False)


def test_report_headline_metrics_exist_in_the_evaluators_outputs(demo_run):
    """Every headline pattern of every evaluator matches a metric it wrote, every metric it wrote is declared,
    and each summary card of the report shows metrics that exist."""
    for ev in demo_run.evaluations:
        spec = REGISTRY[ev.evaluator]
        assert all(any(fnmatchcase(m, p) for m in ev.metrics) for p in spec.headline), (ev.evaluator, spec.headline)
        assert all(spec.writes(m) for m in ev.metrics), [m for m in ev.metrics if not spec.writes(m)]
        shown = REGISTRY.headline(ev)
        assert shown and set(shown) <= set(ev.metrics)
    html = demo_run.html.read_text()
    for name in ("accuracy", "ece", "adaptive_ece", "auroc/logp/noise", "robust_acc/linf/0.0314/K=1/worst",
                 "fid/digits-wrn/train"):
        assert f'<span class="metric" title="{name} · ' in html, name  # on the summary cards, named in words
    assert '<span class="metric" title="robust_acc/linf/0.0314/K=1/worst · digits test, N=64">robust accuracy, ' \
        'L-inf 8/255, JEM-1, worst case <b>' in html
    by = {e.evaluator: REGISTRY.headline(e) for e in demo_run.evaluations if e.checkpoint["name"] == "jem-digits"}
    assert by["calib"] == ["ece", "adaptive_ece"] and by["gen"][0].startswith("fid/digits-wrn/")
    assert by["robust"] == ["robust_acc/linf/0.0314/K=1/worst"]


def test_demo_results_metric_values_unchanged(demo_run):
    """The quick demo's metric values equal those of jembench 0.1.0 before the settings redesign (recorded in
    tests/data/demo-quick-metrics.json from a run of the commit before it)."""
    expected = json.loads((Path(__file__).parent / "data" / "demo-quick-metrics.json").read_text())
    result = demo_run
    got = [{"evaluator": e.evaluator, "checkpoint": e.checkpoint["name"], "metrics": to_jsonable(e.metrics),
            "intervals": to_jsonable(e.intervals)} for e in result.evaluations
           if e.evaluator in {x["evaluator"] for x in expected}]  # evaluators added since have no recorded values
    assert [(g["evaluator"], g["checkpoint"]) for g in got] == [(e["evaluator"], e["checkpoint"]) for e in expected]
    for g, e in zip(got, expected):
        assert set(g["metrics"]) == set(e["metrics"]), (g["evaluator"], g["checkpoint"])
        for key, value in e["metrics"].items():  # NaN is written as null
            assert g["metrics"][key] == (value if value is None else pytest.approx(value, rel=1e-6, abs=1e-9)), key
        assert set(g["intervals"]) == set(e["intervals"])
        for key, (lo, hi) in e["intervals"].items():
            assert g["intervals"][key] == [pytest.approx(lo, rel=1e-6, abs=1e-9), pytest.approx(hi, rel=1e-6, abs=1e-9)]
