"""``jembench clf`` / ``jembench calib`` end to end on a tiny WRN and digits, and the Python API they mirror."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import confusion_matrix, log_loss

import jembench
from jembench.cli import main
from jembench.metrics import ece
from jembench.models.hybrid import HybridModel, ModelInfo
from jembench.models.wrn import JEMNet


@pytest.fixture
def ckpt(tiny_jem, tmp_path):
    path = tmp_path / "tiny.pt"
    jembench.save_native(tiny_jem, path)
    return path


def _run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result


def test_clf_writes_metrics_protocol_and_raw(ckpt, tmp_path):
    out = tmp_path / "clf"
    r = _run("clf", ckpt, "--dataset", "digits", "--n", 40, "--sigma", 0.03, "--seed", 3, "--device", "cpu",
             "--save-raw", "--out-dir", out)
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "tiny" in r.output
    doc = json.loads((out / "results.json").read_text())
    ev = doc["evaluations"][0]
    assert ev["evaluator"] == "clf"
    assert set(ev["metrics"]) >= {"accuracy", "nll", "brier", "error", "n"}
    lo, hi = ev["intervals"]["accuracy"]
    assert lo <= ev["metrics"]["accuracy"] <= hi
    p = ev["protocol"]
    assert (p["dataset"], p["split"], p["n"], p["test_sigma"], p["seed"]) == ("digits", "test", 40, 0.03, 3)
    assert len(ev["checkpoint"]["sha256"]) == 64 and doc["provenance"]["versions"]["torch"]
    assert len(ev["rows"]) == 10 and sum(row["n"] for row in ev["rows"]) == 40
    assert sum(sum(row["confusion"]) for row in ev["rows"]) == 40
    raw = np.load(out / ev["artifacts"]["raw"])
    assert raw["probs"].shape == (40, 10) and raw["labels"].shape == (40,)
    acc = float((raw["probs"].argmax(1) == raw["labels"]).mean())
    assert acc == pytest.approx(ev["metrics"]["accuracy"])
    # the evaluator's wiring, checked against scikit-learn on the per-sample arrays it wrote
    probs64 = torch.from_numpy(raw["logits"]).double().softmax(-1).numpy()
    assert ev["metrics"]["nll"] == pytest.approx(log_loss(raw["labels"], probs64, labels=range(10)), rel=1e-6)
    onehot = np.eye(10)[raw["labels"]]
    assert ev["metrics"]["brier"] == pytest.approx(((probs64 - onehot) ** 2).sum(1).mean(), rel=1e-6)
    cm = confusion_matrix(raw["labels"], raw["probs"].argmax(1), labels=range(10))
    assert [row["confusion"] for row in ev["rows"]] == cm.tolist()
    with np.errstate(invalid="ignore"):
        recall = cm.diagonal() / cm.sum(1)  # NaN for a class absent from the 40
    np.testing.assert_allclose([np.nan if row["accuracy"] is None else row["accuracy"] for row in ev["rows"]], recall)


def test_same_command_twice_gives_the_same_numbers(ckpt, tmp_path):
    docs = []
    for i in range(2):
        r = _run("calib", ckpt, "--dataset", "digits", "--n", 30, "--sigma", 0.1, "--bootstrap", 20, "--device",
                 "cpu", "--out-dir", tmp_path / f"run{i}", "--json")
        assert r.exit_code == 0, r.output
        docs.append(json.loads(r.stdout))  # --json: nothing but the document on stdout
    a, b = (d["evaluations"][0] for d in docs)
    assert a["metrics"] == b["metrics"] and a["intervals"] == b["intervals"]


def test_calib_bins_figure_and_temperature_reference(ckpt, tmp_path):
    out = tmp_path / "calib"
    r = _run("calib", ckpt, "--dataset", "digits", "--n", 60, "--bins", 20, "--bootstrap", 30, "--device", "cpu",
             "--save-raw", "--out-dir", out)
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "results.json").read_text())["evaluations"][0]
    assert ev["protocol"]["bins"] == 20 and len(ev["rows"]) == 20
    assert ev["protocol"]["bootstrap"]["resamples"] == 30
    assert ev["protocol"]["temperature_scaling"]["applied"] is False
    for name in ("ece", "adaptive_ece", "mce", "rms_ce", "classwise_ece"):
        assert name in ev["metrics"] and len(ev["intervals"][name]) == 2
    assert ev["metrics"]["temperature_scaling/n_fit"] + ev["metrics"]["temperature_scaling/n_eval"] == 60
    png = (out / ev["artifacts"]["reliability"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    raw = np.load(out / ev["artifacts"]["raw"])
    assert raw["probs"].shape == (60, 10)
    # the headline ECE is the unscaled probabilities' (temperature scaling is a reference, never applied)
    assert ev["metrics"]["ece"] == pytest.approx(ece(torch.from_numpy(raw["probs"]), torch.from_numpy(raw["labels"]),
                                                     20), abs=1e-9)
    assert ev["metrics"]["temperature_scaling/temperature"] != pytest.approx(1.0, abs=1e-3)
    assert ev["metrics"]["temperature_scaling/nll_after"] <= ev["metrics"]["temperature_scaling/nll_before"] + 0.05


def test_checkpoint_from_env_and_comparison_table(ckpt, tiny_jem, tmp_path):
    other = tmp_path / "other.pt"
    tiny_jem.info.name = "other"
    jembench.save_native(tiny_jem, other)
    r = _run("clf", "--n", 20, "--device", "cpu", "--out-dir", tmp_path / "env", env={"JEMBENCH_CKPT": str(ckpt)})
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "env" / "results.json").read_text())["evaluations"][0]
    assert ev["protocol"]["dataset"] == "digits"  # the checkpoint's own dataset
    r = _run("clf", ckpt, other, "--n", 20, "--device", "cpu", "--out-dir", tmp_path / "two")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines[0].startswith("checkpoint") and lines[1].startswith("tiny") and lines[2].startswith("other")


def _comparable(doc):
    return [{k: v for k, v in e.items() if k != "wall_time_s"} for e in doc["evaluations"]]


def test_api_mirrors_the_cli_json(ckpt, tiny_jem, tmp_path):
    result = jembench.clf([tiny_jem], "digits", n=20, sigma=0.0, seed=0, device="cpu", out_dir=tmp_path)
    assert [e.evaluator for e in result.evaluations] == ["clf"]
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(result.to_dict()))
    r = _run("clf", ckpt, "--dataset", "digits", "--n", 20, "--sigma", 0.05, "--device", "cpu", "--json",
             "--out-dir", tmp_path / "cli")
    assert r.exit_code == 0, r.output
    api = jembench.clf(str(ckpt), "digits", n=20, sigma=0.05, device="cpu")
    assert _comparable(json.loads(r.stdout)) == _comparable(json.loads(json.dumps(api.to_dict())))
    cal = jembench.calib(tiny_jem, "digits", n=20, device="cpu", bootstrap=5)
    assert cal.to_dict()["evaluations"][0]["evaluator"] == "calib"


def test_cache_dir_second_run_calls_no_model(ckpt, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = HybridModel.logits_and_log_px

    def counted(self, x):
        calls["n"] += 1
        return original(self, x)

    monkeypatch.setattr(HybridModel, "logits_and_log_px", counted)
    docs = []
    for cmd in ("clf", "calib"):  # separate processes in real life: a fresh ForwardCache each, one directory
        r = _run(cmd, ckpt, "--n", 30, "--sigma", 0.03, "--bootstrap" if cmd == "calib" else "--seed", 0,
                 "--device", "cpu", "--cache-dir", tmp_path / "cache", "--json", "--out-dir", tmp_path / cmd)
        assert r.exit_code == 0, r.output
        docs.append(json.loads(r.stdout))
        assert calls["n"] == 1  # 30 images = one batch, by clf; calib is served from the disk cache
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert docs[0]["evaluations"][0]["metrics"]["accuracy"] == docs[1]["evaluations"][0]["metrics"]["accuracy"]


def _error(r):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("jembench: error: ")
    return lines[0]


def test_unknown_dataset_lists_the_known_ones(ckpt, tmp_path):
    line = _error(_run("clf", ckpt, "--dataset", "cifar11", "--device", "cpu", "--out-dir", tmp_path))
    assert "cifar11" in line and "digits" in line and "cifar10" in line


def test_absent_dataset_says_where_and_how(ckpt, tmp_path):
    root = tmp_path / "data"
    line = _error(_run("calib", ckpt, "--dataset", "cifar10", "--data-dir", root, "--device", "cpu",
                       "--out-dir", tmp_path / "o"))
    assert str(root) in line and "--download" in line
    assert not (tmp_path / "o" / "results.json").exists()


def test_jem_files_default_to_cifar10(tiny_jem, tmp_path):
    path = tmp_path / "jem.pt"
    torch.save({"model_state_dict": tiny_jem.net.state_dict(), "replay_buffer": torch.zeros(4, 1, 8, 8)}, path)
    line = _error(_run("clf", path, "--data-dir", tmp_path / "data", "--device", "cpu", "--out-dir", tmp_path / "o"))
    assert "'cifar10' not found" in line


def test_class_count_mismatch(tmp_path):
    torch.manual_seed(0)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=5, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="none", dataset="digits", name="five")
    path = tmp_path / "five.pt"
    jembench.save_native(HybridModel(JEMNet(10, 1, "none", 1, 5), info), path)
    line = _error(_run("clf", path, "--dataset", "digits", "--device", "cpu", "--out-dir", tmp_path / "o"))
    assert "5 classes" in line and "10" in line


def test_bad_options_are_one_line_errors(ckpt, tmp_path):
    _error(_run("calib", ckpt, "--bins", 0, "--device", "cpu", "--out-dir", tmp_path))
    _error(_run("clf", ckpt, "--n", 0, "--device", "cpu", "--out-dir", tmp_path))
    _error(_run("clf", "--device", "cpu", "--out-dir", tmp_path, env={"JEMBENCH_CKPT": ""}))


def test_warnings_are_one_line_each(tiny_jem):
    from jembench.data import get_dataset
    from jembench.evaluators.calib import calib_evaluation
    from jembench.evaluators.clf import clf_evaluation
    from jembench.forward import ForwardPass

    data = get_dataset("digits", "test").first(40)
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(40, dtype=torch.long)
    labels[20:] = 3  # 8 of 10 classes absent
    logits = torch.randn(40, 10, generator=g)  # unrelated to the labels
    fp = ForwardPass(logits, logits.logsumexp(-1), labels, "k", {"dataset": "digits", "split": "test", "n": 40})
    ev = clf_evaluation(fp, tiny_jem, data, seed=0)
    assert ev.warnings == ["8 of 10 classes have no samples in the evaluation set (their accuracy is NaN): "
                           "1, 2, 4, 5, 6, 7, 8, 9"]
    anti = ForwardPass(-10 * torch.nn.functional.one_hot(labels, 10).float(), logits[:, 0], labels, "k", fp.protocol)
    ev = calib_evaluation(anti, tiny_jem, data, seed=0, bins=5, bootstrap=0, level=0.95, ts_fraction=0.5)
    assert ev.metrics["temperature_scaling/temperature"] == 1e4
    assert any(w.startswith("the fitted temperature sits at its bound 10000") for w in ev.warnings)
