"""Bad checkpoint files: the API raises a one-line CheckpointError; the CLI prints one line and exits 2.

Each case is built for real (torch.save output cut in half, a pickle whose __reduce__ would create a file,
an HTML page saved as .pt, ...), then read through ``jembench.load`` and ``jembench inspect``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.errors import CheckpointError
from jembench.models import JEMNet

ROOT = Path(__file__).resolve().parents[1]


def wrn_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return JEMNet(10, 1, "none", 1, 10).state_dict()


class WouldRunCode:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def half_of(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_case(name: str, tmp: Path) -> tuple[Path, dict, str]:
    """(path, load overrides, regex the one-line message must match) for each bad file."""
    p = tmp / f"{name}.pt"
    if name == "missing":
        return p, {}, r"checkpoint not found: .*missing\.pt"
    if name == "directory":
        p.mkdir()
        return p, {}, r"is a directory"
    if name == "empty":
        p.write_bytes(b"")
        return p, {}, r"empty \(0 bytes\)"
    if name == "html":
        p.write_text("<!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan warning</title></head></html>")
        return p, {}, r"HTML/XML page, not a torch checkpoint"
    if name == "git-lfs":
        p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n")
        return p, {}, r"Git LFS pointer.*git lfs pull"
    if name == "random-bytes":
        p.write_bytes(bytes(range(7, 200)))
        return p, {}, r"not a torch checkpoint \(unrecognised file header"
    if name == "npz-as-pt":  # numpy's .npz is a zip archive too: not a truncated checkpoint, a different file
        import numpy as np

        with open(p, "wb") as fh:
            np.savez(fh, x=np.zeros(3))
        return p, {}, r"zip archive but not a torch checkpoint \(no data\.pkl; it holds x\.npy\)"
    if name == "zipped-checkpoint":  # a .zip holding the .pt: torch would read its data.pkl from the wrong place
        import zipfile

        torch.save({"model_state_dict": wrn_state_dict()}, tmp / "inner.pt")
        with zipfile.ZipFile(p, "w") as zf:
            zf.write(tmp / "inner.pt", "inner.pt")
        return p, {}, r"zip archive but not a torch checkpoint \(no data\.pkl; it holds inner\.pt\): unpack it"
    if name == "truncated-zip":
        torch.save({"model_state_dict": wrn_state_dict()}, p)
        return half_of(p), {}, r"truncated or corrupt"
    if name == "truncated-legacy":
        torch.save({"model_state_dict": wrn_state_dict()}, p, _use_new_zipfile_serialization=False)
        return half_of(p), {}, r"truncated or corrupt"
    if name == "bit-flip":  # torch.load itself does not check the zip CRCs: this would load wrong weights
        torch.save({"model_state_dict": wrn_state_dict()}, p)
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
        return p, {}, r"corrupt \(bad CRC in .*\); download it again"
    if name in ("code-zip", "code-legacy"):
        torch.save({"model_state_dict": wrn_state_dict(), "hook": WouldRunCode(tmp / "MARKER")}, p,
                   _use_new_zipfile_serialization=name == "code-zip")
        return p, {}, r"refused to load .*would import or run code \(it references \w+\.system\).*weights_only=True"
    if name == "foreign-keys":
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.zeros(64),
                    "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, p)
        return p, {}, (r"keys no known architecture explains: unexpected bn1\.weight, conv1\.weight, fc\.bias, "
                       r"fc\.weight; missing class_output\.weight, f\.conv1\.weight, f\.layer1\.0\.conv1\.weight")
    if name == "extra-and-missing-keys":
        sd = wrn_state_dict()
        sd["f.attention.weight"] = torch.zeros(3)
        del sd["f.layer2.0.conv2.bias"]
        torch.save({"model_state_dict": sd}, p)
        return p, {}, r"unexpected f\.attention\.weight; missing f\.layer2\.0\.conv2\.bias"
    if name == "wrong-shapes":
        sd = wrn_state_dict()
        sd["class_output.weight"] = torch.zeros(10, 32)
        torch.save({"model_state_dict": sd}, p)
        return p, {}, r"shapes do not fit WRN-10-1.*class_output\.weight is \(10, 32\), expected \(10, 64\)"
    if name == "classes-vs-dataset":
        torch.manual_seed(0)
        torch.save({"model_state_dict": JEMNet(10, 1, "none", 1, 100).state_dict()}, p)
        return p, {"dataset": "digits"}, r"has 100 classes but dataset 'digits' has 10"
    if name == "tensor-object":
        torch.save(torch.zeros(3, 4), p)
        return p, {}, r"not a model checkpoint \(it holds a Tensor"
    if name == "list-object":
        torch.save([wrn_state_dict()], p)
        return p, {}, r"not a model checkpoint \(it holds a list"
    if name == "dict-without-weights":
        torch.save({"epoch": 3, "args": {"lr": 0.1}}, p)
        return p, {}, r"not a model checkpoint \(a dict with keys epoch, args"
    raise AssertionError(name)


CASES = ["missing", "directory", "empty", "html", "git-lfs", "random-bytes", "npz-as-pt", "zipped-checkpoint",
         "truncated-zip", "truncated-legacy",
         "bit-flip", "code-zip", "code-legacy", "foreign-keys", "extra-and-missing-keys", "wrong-shapes",
         "classes-vs-dataset", "tensor-object", "list-object", "dict-without-weights"]


@pytest.mark.parametrize("name", CASES)
def test_api_raises_one_line(tmp_path, name):
    path, overrides, pattern = make_case(name, tmp_path)
    with pytest.raises(CheckpointError, match=pattern) as err:
        jembench.load(path, **overrides)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("name", CASES)
def test_cli_prints_one_line_and_exits_2(tmp_path, name):
    path, overrides, pattern = make_case(name, tmp_path)
    args = ["inspect", str(path)] + [a for k, v in overrides.items() for a in (f"--{k}", v)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jembench: error: "), result.stderr
    assert re.search(pattern, lines[0])
    assert not (tmp_path / "MARKER").exists()


def test_code_pickle_refused_from_a_real_process(tmp_path):
    """The installed entry point, as a user runs it: one stderr line, exit 2, no traceback, no side effect."""
    path, _, pattern = make_case("code-zip", tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "inspect", str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("jembench: error:")]
    assert len(errors) == 1 and "would import or run code" in errors[0]
    assert not (tmp_path / "MARKER").exists()


def test_marker_pickle_really_runs_code_without_weights_only(tmp_path):
    """Guard for the test above: the payload is live, so its refusal is what kept the marker away."""
    path, _, _ = make_case("code-legacy", tmp_path)
    torch.load(path, weights_only=False)
    assert (tmp_path / "MARKER").exists()



CKPT_COMMANDS = ["inspect", "clf", "calib", "ood", "robust", "gen", "density", "run-all"]
SLIPS = [(c, case) for c in CKPT_COMMANDS + ["train --resume"] for case in ("missing", "directory")] + [
    ("train --out", "directory")]  # a missing --out is simply created


@pytest.mark.parametrize("command,case", SLIPS)
def test_every_command_explains_a_missing_file_or_a_directory(tmp_path, command, case):
    """The two commonest slips, on every command that takes a file: one line, exit 2, before any work."""
    path = tmp_path / "run"
    if case == "directory":
        path.mkdir()
    out_dir = ["--out-dir", str(tmp_path / "out")] if command in CKPT_COMMANDS[1:] else []
    result = CliRunner().invoke(main, command.split() + [str(path)] + out_dir)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jembench: error: "), result.stderr
    assert re.search("directory" if case == "directory" else "not found|no such file", lines[0]), lines[0]
    assert not (tmp_path / "out").exists()
