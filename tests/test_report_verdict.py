"""The verdict, paired comparisons, take-away formats (load_results, LaTeX, CSV names, report --json) and sanity
notes, on one real run-all of the bundled demo checkpoints (a JEM and a plain classifier) and on synthetic tables."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from jembench.cli import main
from jembench.reporting.names import describe, direction
from jembench.reporting.sanity import notes
from jembench.reporting.tables import ComparisonTable, Row
from test_run_all import DEMO, TINY

pytestmark = pytest.mark.skipif(not all(p.exists() for p in DEMO), reason="bundled demo checkpoints absent")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from jembench.evaluators.run_all import run_all

    out = tmp_path_factory.mktemp("demo")
    result = run_all(DEMO, overrides={**TINY, "robust.purify_steps": "0,1", "robust.eot": 1,
                                      "robust.eval_purifications": 1}, out_dir=out, device="cpu", progress=False)
    assert not result.failed
    return out, result


def test_verdict_names_the_better_model_for_each_claim_and_agrees_with_the_tables(demo, tmp_path):
    from jembench.evaluators.report import report

    out, _ = demo
    result = report(out, tmp_path / "r.html", csv_dir=tmp_path / "csv")
    claims = {v.claim for v in result.verdicts}
    assert {"Accuracy", "Calibration", "OOD detection", "Robustness, undefended", "Robustness with purification",
            "Generation", "Density"} <= claims
    assert next(v for v in result.verdicts if v.claim == "Density").metric == "ais/bits_per_dim"
    tables = {(t.evaluator, t.protocol_key): t for t in result.tables}
    for v in result.verdicts:
        assert v.baseline == "baseline-digits"  # the plain classifier (px_weight 0), found in the checkpoint
        t = tables[(v.evaluator, v.protocol_key)]
        measured = {r.label: r for r in t.rows if r.kind == "measured"}
        if v.metric in t.metrics:  # the verdict reads the table's numbers
            assert v.values == {k: r.values[v.metric] for k, r in measured.items()}
        sign = direction(v.metric)
        assert v.best == max(v.values, key=lambda k: sign * v.values[k])
        assert v.claim in v.sentence and v.best in v.sentence
    by_metric = {v.metric: v for v in result.verdicts}
    assert by_metric["auroc/logp/mean"].best == "jem-digits"  # JEM's claim: log p(x) detects OOD
    assert next(v for v in result.verdicts if v.claim == "Calibration").best == "baseline-digits"
    assert next(v for v in result.verdicts if v.claim == "Generation").best == "jem-digits"
    assert "not tested" in next(v for v in result.verdicts if v.claim == "Generation").sentence
    html = (tmp_path / "r.html").read_text()
    assert html.index('id="verdict"') < html.index('id="summary"') < html.index('id="tables"')
    assert 'class="banner"' in html and "not for publication" in html
    assert "robust accuracy, L-inf 8/255, JEM-1, worst case" in html and 'class="best"' in html
    assert "Holm" in html and "digits test, N=48" in html  # multiple-comparison note; evaluation set and N


def test_results_json_comparisons_are_paired_on_the_same_samples(demo):
    out, _ = demo
    doc = json.loads((out / "results.json").read_text())
    comps = doc["comparisons"]
    fields = {"metric", "a", "b", "difference", "interval", "p_value", "test", "n"}
    assert comps and all(fields <= set(c) for c in comps)
    keys = {(e["evaluator"], e["protocol_key"]) for e in doc["evaluations"]}
    assert all((c["evaluator"], c["protocol_key"]) in keys for c in comps)  # never across protocols
    assert all(c["a"] == "jem-digits" and c["b"] == "baseline-digits" for c in comps)
    assert {c["evaluator"] for c in comps} == {"clf", "calib", "ood", "robust"}  # gen: independent samples
    acc = next(c for c in comps if c["metric"] == "accuracy")
    raw = {e["checkpoint"]["name"]: np.load(out / e["artifacts"]["raw"]) for e in doc["evaluations"]
           if e["evaluator"] == "clf"}
    hit = {k: z["probs"].argmax(1) == z["labels"] for k, z in raw.items()}
    b = int(np.sum(hit["jem-digits"] & ~hit["baseline-digits"]))
    c = int(np.sum(~hit["jem-digits"] & hit["baseline-digits"]))
    assert acc["p_value"] == (pytest.approx(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0)
    assert acc["difference"] == pytest.approx(hit["jem-digits"].mean() - hit["baseline-digits"].mean())
    assert acc["interval"][0] <= acc["difference"] <= acc["interval"][1] and acc["n"] == 48
    assert any(c["metric"].startswith("robust_acc/linf/0.0314/K=1/worst") for c in comps)


def test_load_results_round_trips_the_demo(demo):
    import jembench

    out, _ = demo
    df = jembench.load_results(out)
    doc = json.loads((out / "results.json").read_text())
    expected = {(e["checkpoint"]["name"], e["evaluator"], m, e["protocol_key"]): v for e in doc["evaluations"]
                if e["status"] == "ok" for m, v in e["metrics"].items()}
    assert len(df) == len(expected) and not df.duplicated(["checkpoint", "evaluator", "metric", "protocol_key"]).any()
    got = {(r.checkpoint, r.evaluator, r.metric, r.protocol_key): r.value for r in df.itertuples()}
    assert got.keys() == expected.keys() and all(got[k] == pytest.approx(expected[k]) for k in got)
    acc = df[(df.metric == "accuracy") & (df.evaluator == "clf")]
    assert set(acc.n) == {48} and all(len(iv) == 2 for iv in acc.interval) and acc.protocol.iloc[0]["n"] == 48
    assert jembench.load_results([out / "results.json"]).shape == df.shape


def test_latex_tables_are_balanced_one_row_per_checkpoint(demo, tmp_path):
    out, _ = demo
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "r.html"), "--latex",
                                    str(tmp_path / "tex"), "--csv-dir", str(tmp_path / "csv")])
    assert res.exit_code == 0, res.output
    tex = sorted((tmp_path / "tex").glob("*.tex"))
    assert [p.stem for p in tex] == sorted(p.stem for p in (tmp_path / "csv").glob("*.csv"))
    assert {"Accuracy", "Calibration", "OOD_detection", "Generation"} <= {p.stem for p in tex}
    for path in tex:
        text = path.read_text()
        for env in ("table", "tabular"):
            assert text.count(f"\\begin{{{env}}}") == text.count(f"\\end{{{env}}}") >= 1
        assert text.count("{") - text.count("\\{") == text.count("}") - text.count("\\}")
        for body in re.findall(r"\\midrule\n(.*?)\\bottomrule", text, re.S):
            rows = [line for line in body.splitlines() if line.strip()]
            assert [r.split(" & ")[0] for r in rows] == ["jem-digits", "baseline-digits"]
    acc = (tmp_path / "tex" / "Accuracy.tex").read_text()
    assert "$\\pm$" in acc and "\\textbf{" in acc and "\\toprule" in acc


def test_report_json_and_baseline_option(demo, tmp_path):
    out, _ = demo
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "r.html"), "--json",
                                    "--baseline", "jem-digits"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    fields = {"checkpoint", "evaluator", "metric", "protocol_key", "value", "interval", "n", "protocol"}
    assert fields <= set(records[0])
    from jembench.evaluators.report import report

    flipped = report(out, tmp_path / "r2.html", baseline="jem-digits")
    assert flipped.comparisons and all(c.b == "jem-digits" for c in flipped.comparisons)
    bad = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "r3.html"), "--baseline", "nope"])
    assert bad.exit_code == 2 and "--baseline 'nope' names no checkpoint" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "r3.html").exists()
    early = CliRunner().invoke(main, ["run-all", *map(str, DEMO), "--baseline", "nope",
                                      "--out-dir", str(tmp_path / "x")])
    assert early.exit_code == 2 and "is none of the checkpoints" in early.output and not (tmp_path / "x").exists()


def test_sanity_notes_on_is_kid_and_small_n():
    gen = ComparisonTable("gen", "k", {"n": 50}, ["is/x", "is_std/x", "fid/x/train", "kid/x/train", "is_real/x/train"],
                          [Row("jem", "measured", {"is/x": 8.31, "is_std/x": 0.4, "fid/x/train": 258.5,
                                                   "kid/x/train": 5230.5, "is_real/x/train": 1.02}),
                           Row("clf", "measured", {"is/x": 8.30, "is_std/x": 0.5, "fid/x/train": 9839.5,
                                                   "kid/x/train": 2357691.0, "is_real/x/train": 1.02})], "Generation")
    text = " ".join(notes([gen]))
    assert "torch-fidelity" in text and "10\u00b3" in text  # KID's scale explained
    assert "IS cannot separate jem (8.31) and clf (8.30)" in text and "38.1-fold" in text
    assert "degenerate" in text and "fewer than 100" in text
    fine = ComparisonTable("gen", "k", {"n": 5000}, ["is/x", "fid/x/train"],
                           [Row("a", "measured", {"is/x": 8.0, "fid/x/train": 30.0}),
                            Row("b", "measured", {"is/x": 5.0, "fid/x/train": 90.0})], "Generation")
    assert notes([fine]) == []


def test_metric_names_in_words():
    assert describe("robust_acc/linf/0.0314/K=1/worst") == "robust accuracy, L-inf 8/255, JEM-1, worst case"
    assert describe("robust_acc/l2/0.5000/K=0/pgd") == "robust accuracy, L2 0.5, undefended, pgd"
    assert describe("auroc/logp/svhn", {"in_dataset": "cifar10"}) == "AUROC, log p(x), cifar10 vs svhn"
    assert describe("ece", {"bins": 20}) == "ECE (20 bins)"
    assert describe("fid/inception/train") == "FID (inception features, vs train)"
    assert (direction("ece"), direction("auroc/msp/x"), direction("n")) == (-1, 1, 0)
    assert (direction("ais/bits_per_dim"), direction("ais/log_px"), direction("sm/dsm/0.1"), direction("ais/log_z")) \
        == (-1, 1, -1, 0)  # density metrics: by their whole name (ais/ and sm/ name only the estimator)
    assert describe("sm/dsm/0.1") == "denoising score matching loss, sigma 0.1"


def test_later_jem_family_numbers_appear_only_under_their_protocol():
    from jembench.reported import matching

    def models(evaluator, protocol, metric):
        return {r.model for r in matching(evaluator, protocol, [metric])}

    fid = "fid/inception-v3-compat/train+test"
    top90 = {"dataset": "cifar10", "n": 9000, "sampling": {"source": "buffer", "buffer_top": 0.9}}
    assert {"SADA-JEM", "M-EBM (M-JEM), top 90%", "JEM++ (M=10), buffer 900/class"} == models("gen", top90, fid)
    whole = {"dataset": "cifar10", "n": 10000, "sampling": {"source": "buffer", "buffer_top": None}}
    assert {"M-EBM (M-JEM), all 10k", "JEM++ (M=10), buffer 1000/class"} <= models("gen", whole, fid)
    assert "SADA-JEM" not in models("gen", whole, fid)
    fresh = {"dataset": "cifar10", "n": 10000, "sampling": {"source": "fresh"}}
    assert not {m for m in models("gen", fresh, fid) if "SADA" in m or "M-EBM" in m or "buffer" in m}
    clean = {"dataset": "cifar10", "split": "test", "test_sigma": 0.0}
    assert {"SADA-JEM", "M-EBM (M-JEM)"} <= models("clf", clean, "accuracy")
    assert "SADA-JEM" not in models("clf", {**clean, "test_sigma": 0.03}, "accuracy")
    assert not models("clf", {**clean, "dataset": "digits"}, "accuracy")


def _clf_run(folder, name, correct, labels, sigma=0.0, px_weight=None):
    """A results.json with one clf evaluation and its per-sample arrays (probabilities that are right on
    ``correct``)."""
    from jembench.io import atomic_savez
    from jembench.results import Evaluation, provenance, write_results

    probs = np.full((len(labels), 10), 0.02)
    pred = np.where(correct, labels, (labels + 1) % 10)
    probs[np.arange(len(labels)), pred] = 0.82
    atomic_savez(folder / "raw.npz", probs=probs, labels=labels)
    ck = {"name": name, "sha256": name * 8, "train_config": {} if px_weight is None else {"px_weight": px_weight}}
    ev = Evaluation("clf", ck, {"dataset": "digits", "split": "test", "n": len(labels), "test_sigma": sigma},
                    {"accuracy": float(np.mean(correct))}, artifacts={"raw": "raw.npz"})
    write_results(folder, [ev], provenance(device="cpu", seed=0))
    return folder


def test_without_a_baseline_every_pair_is_compared_and_the_best_named(tmp_path):
    from jembench.evaluators.report import report

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    runs = [_clf_run(tmp_path / n, n, rng.random(200) < p, labels) for n, p in (("a", 0.95), ("b", 0.6), ("c", 0.8))]
    result = report(runs, tmp_path / "r.html")
    assert {(c.a, c.b) for c in result.comparisons} == {("a", "b"), ("a", "c"), ("b", "c")}
    (v,) = result.verdicts
    assert v.baseline is None and v.best == "a" and "a is best" in v.sentence and "next: c" in v.sentence
    assert "significant" in v.sentence and all(c.p_holm >= c.p_value for c in result.comparisons)
    # a plain classifier among them becomes the baseline
    runs[1] = _clf_run(tmp_path / "b", "b", rng.random(200) < 0.6, labels, px_weight=0)
    result = report(runs, tmp_path / "r2.html")
    assert {(c.a, c.b) for c in result.comparisons} == {("a", "b"), ("c", "b")}
    assert result.verdicts[0].baseline == "b"


def test_no_comparison_across_protocols_or_different_samples(tmp_path):
    from jembench.evaluators.report import report

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 100)
    a = _clf_run(tmp_path / "a", "a", rng.random(100) < 0.9, labels)
    noisy = _clf_run(tmp_path / "b", "b", rng.random(100) < 0.7, labels, sigma=0.03)
    assert report([a, noisy], tmp_path / "r.html").comparisons == []  # different protocols: separate tables
    other = _clf_run(tmp_path / "c", "c", rng.random(100) < 0.7, (labels + 3) % 10)  # same protocol, other samples
    result = report([a, other], tmp_path / "r2.html")
    assert result.comparisons == [] and "not tested" in result.verdicts[0].sentence


def test_per_sample_arrays_are_read_only_from_inside_the_results_folder(tmp_path):
    from jembench.evaluators.report import report
    from jembench.results import Evaluation, read_results, write_results

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 60)
    a = _clf_run(tmp_path / "a", "a", rng.random(60) < 0.9, labels)
    b = _clf_run(tmp_path / "b", "b", rng.random(60) < 0.5, labels)
    assert report([a, b], tmp_path / "r.html").comparisons  # arrays inside their folders: compared
    doc = read_results(b)
    ev = Evaluation.from_dict(doc["evaluations"][0])
    ev.artifacts = {"raw": "../a/raw.npz"}  # points outside its own folder
    write_results(b, [ev], doc["provenance"])
    assert report([a, b], tmp_path / "r2.html").comparisons == []


def test_a_tie_is_called_a_tie(tmp_path):
    from jembench.evaluators.report import report

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 50)
    correct = rng.random(50) < 0.8
    runs = [_clf_run(tmp_path / n, n, correct, labels) for n in ("a", "b")]
    (v,) = report(runs, tmp_path / "r.html").verdicts
    assert "a and b tie at 0.8" in v.sentence and "not significant" in v.sentence
