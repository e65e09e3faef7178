"""``jembench inspect``: the human summary, ``--json`` (= jembench.models.inspect_checkpoint), overrides, help."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.models import JEMNet, inspect_checkpoint


def jem_file(path, norm="batch", n_classes=10, in_ch=1, buffer=True, yopo=False):
    torch.manual_seed(0)
    sd = JEMNet(10, 1, norm, in_ch, n_classes).state_dict()
    if yopo:
        sd.update({k.replace("f.conv1.", "f.layer_one."): v for k, v in sd.items() if k.startswith("f.conv1.")})
    buf = torch.rand(7, in_ch, 32, 32) * 2 - 1 if buffer else None
    torch.save({"model_state_dict": sd, "replay_buffer": buf}, path)
    return path


def run(*args, env=None):
    result = CliRunner(env=env).invoke(main, ["inspect", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_human_summary_names_every_inferred_field(tmp_path):
    path = jem_file(tmp_path / "jem.pt")
    out = run(path)
    for text in ("family        jem (file format: jem)", "WRN-10-1, norm batch (BatchNorm momentum 0.9)",
                 "classes       10", "1x32x32, values [-1, 1]", "ccf: log p(x) = logsumexp", "not recorded",
                 "replay buffer 7x1x32x32", f"sha256        {jembench.models.file_sha256(path)}", "notes"):
        assert text in out, text
    n = sum(p.numel() for p in JEMNet(10, 1, "batch", 1, 10).parameters())
    assert f"parameters    {n:,}" in out


def test_json_is_the_api_document(tmp_path):
    path = jem_file(tmp_path / "jem.pt", yopo=True)
    doc = json.loads(run(path, "--json"))
    assert doc == inspect_checkpoint(path)
    assert doc["family"] == "jem++" and doc["arch_label"] == "WRN-10-1" and doc["replay_buffer_shape"] == [7, 1, 32, 32]
    assert doc["input_shape"] == [1, 32, 32] and doc["value_range"] == [-1.0, 1.0] and doc["sha256"]
    for key in ("depth", "width", "norm", "n_classes", "head", "dataset", "train_sigma", "notes", "n_parameters"):
        assert key in doc


def test_overrides_head_norm_dataset(tmp_path):
    path = jem_file(tmp_path / "gn.pt", norm="instance", buffer=False)
    doc = json.loads(run(path, "--json", "--head", "f", "--norm", "layer", "--dataset", "digits"))
    assert (doc["head"], doc["norm"], doc["dataset"], doc["input_shape"]) == ("f", "layer", "digits", [1, 8, 8])
    assert doc["replay_buffer_shape"] is None
    assert "f: log p(x) = energy head" in run(path, "--head", "f")
    assert "norm inferred as instance" in " ".join(json.loads(run(path, "--json"))["notes"])


def test_native_file_shows_version_and_train_config(tmp_path, tiny_jem):
    tiny_jem.info.train_config = {"lr": 0.05, "p_x_weight": 1.0}
    jembench.save_native(tiny_jem, tmp_path / "n.pt")
    out = run(tmp_path / "n.pt")
    assert "file format: jembench" in out and f"jembench {jembench.__version__}" in out
    assert "lr=0.05 p_x_weight=1.0" in out and "dataset       digits" in out and "1x8x8" in out


def test_checkpoint_from_environment_and_several_files(tmp_path):
    a, b = jem_file(tmp_path / "a.pt"), jem_file(tmp_path / "b.pt", n_classes=100, in_ch=3)
    doc = json.loads(run("--json", env={"JEMBENCH_CKPT": str(a)}))
    assert doc["name"] == "a"
    docs = json.loads(run(a, b, "--json"))
    assert [d["n_classes"] for d in docs] == [10, 100]
    result = CliRunner(env={"JEMBENCH_CKPT": ""}).invoke(main, ["inspect"])
    assert result.exit_code == 2 and result.stderr.startswith("jembench: error: no checkpoint given")


def test_help_teaches():
    out = CliRunner().invoke(main, ["inspect", "--help"]).output
    for text in ("[CKPT]", "$JEMBENCH_CKPT", "--head f", "--norm layer", "--dataset NAME", "weights_only=True",
                 "jembench inspect bundled:jem-digits", "jembench inspect bundled:", "--json"):
        assert text in out, text
