"""Hostile and broken input (issue 12): non-finite models, corrupt caches, names that are formulas or escape
sequences, artifact paths outside the results folder, npz class counts, duplicate checkpoint names, train --json.
(The malicious-pickle test stays in test_checkpoint_errors.py; HTML escaping in test_run_all.py.)"""

from __future__ import annotations

import base64
import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.data.registry import get_dataset
from jembench.errors import CheckpointError, DatasetError, NonFiniteError
from jembench.evaluators.gen import reference_set
from jembench.evaluators.run_all import run_all
from jembench.forward import ForwardCache
from jembench.io import csv_cell, printable
from jembench.metrics import fidelity
from jembench.models import load, save_native
from jembench.results import Evaluation, provenance, write_results
from test_run_all import TINY, fake_evaluators, tiny_checkpoint

ESC = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m\x08"


def _poisoned(tiny_jem, tmp_path: Path, value: float = float("nan")) -> Path:
    with torch.no_grad():
        tiny_jem.net.class_output.weight[3, 0] = value
        tiny_jem.net.f.conv1.weight[0, 0, 0, 0] = float("inf")
    return tiny_checkpoint(tmp_path / "nan.pt", "nan", tiny_jem)


def test_non_finite_checkpoint_is_refused_at_load_naming_the_tensors(tmp_path, tiny_jem):
    path = _poisoned(tiny_jem, tmp_path)
    with pytest.raises(CheckpointError, match=r"non-finite weights or buffers in 2 tensor\(s\): .*class_output\.weight "
                                              r"\(1 NaN of 640 values\)") as info:
        load(path)
    assert "f.conv1.weight (1 inf of" in str(info.value)
    for command in (["inspect"], ["clf", "--out-dir", str(tmp_path / "o")]):  # inspect shows which tensors
        r = CliRunner().invoke(main, [*command, str(path)])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "class_output.weight (1 NaN" in r.stderr
    assert not (tmp_path / "o").exists()


def test_non_finite_replay_buffer_is_dropped_with_a_note(tmp_path, tiny_jem):
    buffer = torch.zeros(4, 1, 8, 8)
    buffer[1, 0, 2, 2] = float("nan")
    tiny_jem.info.name = "buf"
    save_native(tiny_jem, tmp_path / "buf.pt", replay_buffer=buffer)
    model = load(tmp_path / "buf.pt")
    assert model.replay_buffer is None and any("ignored replay_buffer" in n for n in model.info.notes)


class NaNNet(nn.Module):
    """Finite weights, non-finite outputs (as after an overflow)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x):
        out = self.lin(x.flatten(1))
        return out + torch.where(x.flatten(1)[:, :1] > -10, float("nan"), 0.0)


def test_non_finite_outputs_fail_the_step_never_become_numbers(tmp_path, tiny_jem):
    model = jembench.wrap(NaNNet(), n_classes=10, input_shape=(1, 8, 8), dataset="digits", name="nanny")
    with pytest.raises(NonFiniteError, match="checkpoint 'nanny' produced non-finite logits"):
        jembench.clf(model, n=20, device="cpu", progress=False)
    result = run_all([model], out_dir=tmp_path / "out", device="cpu", progress=False, html=False,
                     overrides={**TINY, "evaluators": ("clf", "ood", "robust", "gen")})
    assert {e.evaluator for e in result.evaluations} == {"clf", "ood", "robust", "gen"}
    for e in result.evaluations:
        assert e.status == "failed" and "non-finite" in e.error and not e.metrics, (e.evaluator, e.error)
    with torch.no_grad():
        tiny_jem.net.class_output.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="class_output.bias"):  # in-memory models are checked as files are
        jembench.clf(tiny_jem, n=20, device="cpu", progress=False)


def test_corrupt_forward_cache_entry_is_deleted_and_recomputed(tmp_path, tiny_jem, caplog):
    data = get_dataset("digits", "test").first(30)
    first = ForwardCache(tmp_path).get(tiny_jem, data, progress=False)
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING, logger="jembench"):
        cache = ForwardCache(tmp_path)
        again = cache.get(tiny_jem, data, progress=False)
    assert "forward cache entry" in caplog.text and "deleted, recomputing" in caplog.text
    assert torch.equal(first.logits, again.logits) and cache.model_calls > 0 and cache.disk_hits == 0
    assert ForwardCache(tmp_path).get(tiny_jem, data, progress=False).logits.equal(first.logits)  # rewritten


def test_corrupt_reference_feature_cache_is_recomputed(tmp_path, caplog):
    ext = fidelity.resolve_extractor("auto", "digits")
    ref = get_dataset("digits", "train").first(40)
    first, _ = fidelity.reference_features(ref, ext, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated: was BadZipFile on every gen
    with caplog.at_level(logging.WARNING, logger="jembench"):
        again, info = fidelity.reference_features(ref, ext, cache_dir=tmp_path)
    assert "reference-feature cache entry" in caplog.text and not info["hit"]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert fidelity.reference_features(ref, ext, cache_dir=tmp_path)[1]["hit"]


def test_csv_cells_and_terminal_text_are_neutralised():
    assert [csv_cell(v) for v in ("=HYPERLINK(\"x\")", "+1+2", "-cmd", "@SUM(A1)", "\tx", "\rx")] == [
        "'=HYPERLINK(\"x\")", "'+1+2", "'-cmd", "'@SUM(A1)", "'\tx", "'\rx"]
    assert [csv_cell(v) for v in ("-0.5", "jem", 0.5, None, "1e-3")] == ["-0.5", "jem", 0.5, None, "1e-3"]
    assert printable(f"name {ESC}\n") == "name red\n"


def test_hostile_names_reach_no_spreadsheet_formula_and_no_terminal_escape(tmp_path, tiny_jem, monkeypatch):
    fake_evaluators(monkeypatch, {}, {})
    formula = tiny_checkpoint(tmp_path / "f.pt", '=HYPERLINK("http://evil","x")', tiny_jem)
    r = CliRunner().invoke(main, ["run-all", str(formula), "--device", "cpu", "--out-dir", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    for path in (tmp_path / "a" / "tables").glob("*.csv"):
        rows = list(csv.DictReader(path.open()))
        assert [r["checkpoint"] for r in rows] == ['\'=HYPERLINK("http://evil","x")']
    escape = tiny_checkpoint(tmp_path / "e.pt", f"jem{ESC}", tiny_jem)
    fake_evaluators(monkeypatch, {}, {"robust": RuntimeError(f"bad {ESC}")})
    r = CliRunner().invoke(main, ["run-all", str(escape), "--device", "cpu", "--out-dir", str(tmp_path / "b")])
    assert r.exit_code == 1 and "jemred" in r.stdout and "bad red" in r.stderr
    assert not any(c in r.output for c in "\x1b\x07\x08"), r.output


def test_report_embeds_only_files_inside_the_results_folder(tmp_path):
    from PIL import Image

    private = tmp_path / "private"
    private.mkdir()
    secrets = []
    for i, name in enumerate(("abs", "climb", "link", "inside")):
        Image.new("RGB", (4, 4), (60 * i, 0, 0)).save(private / f"{name}.png")
        secrets.append(base64.b64encode((private / f"{name}.png").read_bytes()).decode())
    run = tmp_path / "shared" / "run"
    run.mkdir(parents=True)
    (run / "inside.png").write_bytes((private / "inside.png").read_bytes())
    (run / "link.png").symlink_to(private / "link.png")  # inside by name, outside once the link is resolved
    ev = Evaluation("clf", {"name": "m", "sha256": "ab"}, {"dataset": "digits"}, {"accuracy": 0.5},
                    artifacts={"abs": str(private / "abs.png"), "climb": "../../private/climb.png", "link": "link.png",
                               "ok": "inside.png"})
    write_results(run, [ev], provenance(device="cpu", seed=0, config={}))
    r = CliRunner().invoke(main, ["report", str(run), "--output", str(tmp_path / "report.html")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "report.html").read_text()
    assert [html.count(s) for s in secrets] == [0, 0, 0, 1]
    assert html.count("outside the results folder") == 3 and r.stderr.count("outside the results folder") == 3


def test_terminal_summary_tells_checkpoints_with_one_name_apart(tmp_path, tiny_jem, monkeypatch):
    fake_evaluators(monkeypatch, {}, {})
    a = tiny_checkpoint(tmp_path / "a" / "jem.pt", "jem", tiny_jem)
    with torch.no_grad():
        tiny_jem.net.class_output.bias += 1
    b = tiny_checkpoint(tmp_path / "b" / "jem.pt", "jem", tiny_jem)
    result = run_all([a, b], out_dir=tmp_path / "out", device="cpu", progress=False)
    rows = result.table().splitlines()[1:]
    assert len(rows) == 2 and rows[0].split()[:3] != rows[1].split()[:3]
    labels = {line.split("  ")[0].strip() for line in rows}
    csv = (tmp_path / "out" / "tables" / "Accuracy.csv").read_text()  # CSVs are named by table title
    assert all(label in csv for label in labels)  # the same labels as the report's rows


def test_train_json_prints_the_error_object_on_divergence(tmp_path):
    digits = get_dataset("digits", "train")
    np.savez(tmp_path / "d.npz", x_train=digits.images[:100].numpy(), y_train=digits.labels[:100].numpy(),
             x_test=digits.images[100:140].numpy(), y_test=digits.labels[100:140].numpy())
    r = CliRunner().invoke(main, ["train", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "x.pt"),
                                  "--epochs", "1", "--depth", "10", "--width", "1", "--batch-size", "50",
                                  "--sgld-steps", "2", "--buffer-size", "100", "--lr", "50", "--quiet", "--json"])
    assert r.exit_code == 2, r.output
    doc = json.loads(r.stdout)
    assert doc["status"] == "failed" and doc["kind"] == "TrainingDiverged" and "diverged at epoch 1" in doc["error"]
    assert doc["checkpoint"] is None and doc["epoch"] == 1
    assert r.stderr.startswith("jembench: error: training diverged")


def test_npz_classes_come_from_the_model_or_a_classes_array(tmp_path, tiny_jem):
    digits = get_dataset("digits", "test")
    keep = digits.labels < 9  # a test subset without the highest class
    np.savez(tmp_path / "sub.npz", x=digits.images[keep][:40].numpy(), y=digits.labels[keep][:40].numpy())
    result = jembench.clf(tiny_jem, f"npz:{tmp_path / 'sub.npz'}", device="cpu", progress=False)
    assert result.evaluations[0].metrics["accuracy"] is not None
    np.savez(tmp_path / "big.npz", x=digits.images[:4].numpy(), y=np.array([0, 1, 2, 12]))
    with pytest.raises(DatasetError, match="has label 12 but checkpoint 'tiny' has 10 classes"):
        jembench.clf(tiny_jem, f"npz:{tmp_path / 'big.npz'}", device="cpu", progress=False)
    np.savez(tmp_path / "named.npz", x=digits.images[:4].numpy(), y=np.array([0, 1, 2, 1]),
             classes=np.array(["a", "b", "c"]))
    assert get_dataset(f"npz:{tmp_path / 'named.npz'}").n_classes == 3
    with pytest.raises(DatasetError, match="checkpoint 'tiny' has 10 classes but dataset .* has 3"):
        jembench.clf(tiny_jem, f"npz:{tmp_path / 'named.npz'}", device="cpu", progress=False)


def test_single_split_npz_reference_is_named_by_what_it_is_and_never_doubled(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.zeros((6, 1, 8, 8), np.uint8))
    for asked in ("train", "test", "train+test"):
        ref = reference_set(f"npz:{tmp_path / 'one.npz'}", asked)
        assert (ref.split, len(ref)) == ("all", 6)
    np.savez(tmp_path / "two.npz", x_train=np.zeros((5, 1, 8, 8), np.uint8), x_test=np.zeros((3, 1, 8, 8), np.uint8))
    ref = reference_set(f"npz:{tmp_path / 'two.npz'}", "train+test")
    assert (ref.split, len(ref)) == ("train+test", 8)
