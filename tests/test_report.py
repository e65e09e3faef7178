"""The report from results files: comparison tables, reported rows, merging, escaping, self-containment."""

import json
import re

import pytest
from click.testing import CliRunner

from jembench.cli import main
from jembench.errors import JembenchError
from jembench.evaluators.report import report
from jembench.reporting import comparison_tables
from jembench.reported import matching, published
from jembench.results import Evaluation
from test_report_helpers import checkpoint, write_run


def test_report_merges_two_results_files_into_one_table(tmp_path):
    a = write_run(tmp_path / "run-a", name="jem", accuracy=0.97)
    b = write_run(tmp_path / "run-b", name="baseline", accuracy=0.93)
    result = report([a, b], tmp_path / "r.html", csv_dir=tmp_path / "csv")
    clf = [t for t in result.tables if t.evaluator == "clf"]
    assert len(clf) == 1
    frame = clf[0].frame().set_index("checkpoint")
    assert frame.loc["jem", "accuracy"] == 0.97 and frame.loc["baseline", "accuracy"] == 0.93
    assert list(frame["kind"]) == ["measured", "measured"]  # digits: no published number applies
    csv = (tmp_path / "csv" / "Accuracy.csv").read_text()  # named by the table's title
    assert "jem" in csv and "baseline" in csv and "accuracy lo" in csv
    html = (tmp_path / "r.html").read_text()
    assert html.count("<img") == 4 and "data:image/png;base64," in html  # 2 runs x (reliability + roc)


def test_report_cli_writes_html_and_json(tmp_path):
    a = write_run(tmp_path / "a", name="jem")
    b = write_run(tmp_path / "b", name="baseline", fail="gen")
    out = tmp_path / "merged.html"
    res = CliRunner().invoke(main, ["report", str(a), str(b.parent), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)  # every measured number, as jembench.load_results gives them
    clf = [r for r in records if r["evaluator"] == "clf" and r["metric"] == "accuracy"]
    assert {r["checkpoint"] for r in clf} == {"jem", "baseline"}
    assert {"value", "interval", "n", "protocol", "protocol_key", "measure"} <= set(clf[0])
    html = out.read_text()
    assert "Failures" in html and "RuntimeError: &lt;i&gt;boom&lt;/i&gt;" in html


def test_protocols_never_share_a_column(tmp_path):
    a = write_run(tmp_path / "a", name="jem", sigma=0.0)
    b = write_run(tmp_path / "b", name="jem-noisy", sigma=0.03)
    result = report([a, b], tmp_path / "r.html")
    clf = [t for t in result.tables if t.evaluator == "clf"]
    assert len(clf) == 2
    assert [len(t.rows) for t in clf] == [1, 1]
    assert all("test_sigma" in t.title for t in clf)  # the titles say what differs


def test_same_checkpoint_in_two_runs_gets_distinct_rows(tmp_path):
    a = write_run(tmp_path / "a", name="jem", accuracy=0.9)
    b = write_run(tmp_path / "b", name="jem", accuracy=0.9)
    labels = [r.label for r in report([a, b], tmp_path / "r.html").tables[0].rows]
    assert len(set(labels)) == 2 and all(lab.startswith("jem") for lab in labels)


def test_hostile_names_are_escaped(tmp_path):
    hostile = "<script>alert(1)</script>"
    a = write_run(tmp_path / "a", name=hostile)
    html = report([a], tmp_path / "r.html").html.read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>few samples</b>" not in html and "&lt;b&gt;few samples&lt;/b&gt;" in html  # warnings too


def test_self_contained_nothing_fetched(tmp_path):
    html = report([write_run(tmp_path / "a", name="jem")], tmp_path / "r.html").html.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "<style>" in html
    assert all(src.startswith("data:") for src in re.findall(r'<img src="([^"]+)"', html))


def test_missing_artifact_is_a_note_not_a_broken_image(tmp_path):
    a = write_run(tmp_path / "a", name="jem")
    (tmp_path / "a" / "roc.png").unlink()
    html = report([a], tmp_path / "r.html").html.read_text()
    assert html.count("<img") == 1 and "is missing" in html


def test_reported_rows_only_where_dataset_and_protocol_match():
    ck = checkpoint("mine", "cifar10", "0" * 64)
    ev_c10 = Evaluation("clf", ck, {"dataset": "cifar10", "split": "test", "test_sigma": 0.03}, {"accuracy": 0.91})
    ev_digits = Evaluation("clf", {**ck, "name": "d"}, {"dataset": "digits", "split": "test"}, {"accuracy": 0.98})
    tables = comparison_tables([(ev_c10, "r"), (ev_digits, "r")])
    c10 = next(t for t in tables if t.protocol["dataset"] == "cifar10")
    digits = next(t for t in tables if t.protocol["dataset"] == "digits")
    reported = [r for r in c10.rows if r.kind == "reported"]
    assert {r.label for r in reported} >= {"JEM", "Wide-ResNet 28-10 (classifier only)"}
    assert next(r for r in reported if r.label == "JEM").values == {"accuracy": 0.929}
    assert all(r.source for r in reported) and not digits.has_reported
    # JEM's numbers come from its eval script (test noise 0.03): a noise-free table shows no JEM row
    clean = comparison_tables([(Evaluation("clf", ck, {"dataset": "cifar10", "split": "test", "test_sigma": 0.0},
                                           {"accuracy": 0.91}), "r")])[0]
    assert "JEM" not in {r.label for r in clean.rows} and "Glow" in {r.label for r in clean.rows}
    # a metric the table does not have, or another evaluator, never matches
    assert matching("clf", {"dataset": "cifar10", "split": "test"}, ["nll"]) == []
    assert matching("gen", {"dataset": "cifar10"}, ["accuracy"]) == []


def test_published_numbers_have_sources_and_units():
    numbers = published()
    assert len(numbers) >= 20
    for n in numbers:
        assert n.source and n.evaluator in {"clf", "calib", "ood", "gen"}
        if n.metric in ("accuracy", "ece") or n.metric.startswith("auroc"):
            assert 0 <= n.value <= 1, n  # fractions, as jembench measures them
    jem = {(n.evaluator, n.metric): n.value for n in numbers if n.model == "JEM"}
    assert jem[("clf", "accuracy")] == 0.929 and jem[("ood", "auroc/msp/svhn")] == 0.89
    assert jem[("gen", "fid/inception-v3-compat/train")] == 38.4 and jem[("gen", "is/inception-v3-compat")] == 8.76


def test_reported_fid_only_next_to_equal_n_and_the_same_extractor():
    """FID is biased in N: published FIDs (10k samples) never sit next to a 500-sample FID or another extractor."""
    cols = ["is/inception-v3-compat", "fid/inception-v3-compat/train"]
    assert {r.model for r in matching("gen", {"dataset": "cifar10", "n": 10000}, cols)} >= {"JEM", "SNGAN"}
    assert matching("gen", {"dataset": "cifar10", "n": 500}, cols) == []
    assert matching("gen", {"dataset": "cifar10", "n": 10000}, ["fid/digits-wrn/train"]) == []
    jempp = matching("gen", {"dataset": "cifar10", "n": 10000}, ["fid/inception-v3-compat/train+test"])
    assert any(r.model.startswith("JEM++") for r in jempp)  # JEM++ measured against train+test only
    assert not any(r.model.startswith("JEM++") for r in matching("gen", {"dataset": "cifar10", "n": 10000}, cols[1:]))


def test_not_a_results_file_is_one_line_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(JembenchError, match="not a jembench results file"):
        report([bad], tmp_path / "r.html")
    res = CliRunner().invoke(main, ["report", str(bad), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.output


def test_metric_names_are_escaped_and_wrap_at_separators():
    from jembench.reporting.render import breakable

    assert str(breakable("<x>/robust_acc")) == "&lt;x&gt;/<wbr>robust_<wbr>acc"


def test_wide_tables_split_into_parts_along_metric_names():
    from jembench.reporting.tables import MAX_COLUMNS, column_groups

    sets, scores = ["noise", "uniform", "svhn", "interp", "celeba"], ["logp", "msp", "maxlogit", "gradnorm"]
    names = [f"{m}/{s}/{o}" for m in ("auroc", "aupr_in", "fpr95") for s in scores for o in sets]
    groups = column_groups(names)
    assert [m for g in groups for m in g.metrics] == names  # every metric once, in order
    assert all(len(g.metrics) <= MAX_COLUMNS for g in groups) and len(groups) == 6
    assert (groups[0].prefix, groups[0].headers[:2]) == ("auroc", ["logp/noise", "logp/uniform"])
    assert all(len({m.split("/")[0] for m in g.metrics}) == 1 for g in groups)  # never two metric families mixed
    small = ["accuracy", "ece", "temperature_scaling/t", "temperature_scaling/ece_after"]
    assert [(g.prefix, g.headers) for g in column_groups(small)] == [("", small)]  # narrow tables stay whole


def test_wide_table_renders_parts_and_folds_the_rest(tmp_path):
    names = [f"{m}/{s}/{o}" for m in ("auroc", "aupr_in", "fpr95") for s in ("logp", "msp", "maxlogit", "gradnorm")
             for o in ("noise", "uniform", "svhn", "interp", "celeba")]
    ck = checkpoint("jem", "digits", "0" * 64)
    evs = [Evaluation("ood", ck, {"in_dataset": "digits"}, {m: 0.5 for m in names})]
    from jembench.reporting import Run, build_report

    html = build_report([Run("a", tmp_path, {}, evs)], tmp_path / "r.html").html.read_text()
    head, folded = html.split('<details class="more">')
    assert head.count("<table class=\"comparison\"") == 2 and folded.count("<table class=\"comparison\"") == 4
    assert "4 more tables: aupr_in, fpr95" in folded
    assert 'title="AUROC, log p(x), digits vs noise (auroc/logp/noise)">logp/<wbr>noise</th>' in head  # short header,
    # the metric in words and its full name on hover


def test_cards_name_each_variant_and_provenance_is_complete(tmp_path):
    a = write_run(tmp_path / "a", name="jem")
    doc = json.loads(a.read_text())
    ck = doc["evaluations"][0]["checkpoint"]
    for k in (0, 1):
        doc["evaluations"].append(Evaluation("robust", ck, {"threat_model": "linf", "K": k},
                                             {f"robust_acc/linf/0.0314/K={k}/worst": 0.5}, wall_time_s=2.0).to_dict())
    doc["provenance"].update(git_commit="abc123def", wall_time_s={"clf/0-jem": 1.25, "total": 9.5})
    a.write_text(json.dumps(doc))
    html = report([a], tmp_path / "r.html").html.read_text()
    assert "Robustness (K=0): ok" in html and "Robustness (K=1): ok" in html
    for text in ("jembench 0.1", "torch ", "abc123def", "<td>CUDA</td>", "<td>seed</td>", ck["sha256"],
                 "wall time clf/0-jem</td><td>1.2 s", "Full configuration"):
        assert text in html, text


def test_row_labels_name_what_tells_duplicates_apart():
    from jembench.reporting.tables import _row_labels

    ck = checkpoint("jem", "digits", "ab" * 32)
    same = [(Evaluation("clf", ck, {}, {"accuracy": 0.9}), run) for run in ("run-a", "run-b")]
    assert _row_labels(same) == ["jem · run-a", "jem · run-b"]  # equal sha256: the run tells them apart
    other = [(Evaluation("clf", {**ck, "sha256": "cd" * 32}, {}, {"accuracy": 0.9}), "run-a"), same[0]]
    assert _row_labels(other) == ["jem · cdcdcdcd", "jem · abababab"]
