"""Checkpoints shipped as package data, named ``bundled:NAME`` on every command, from any directory."""

import fnmatch
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import jembench
from jembench import bundled
from jembench.cli import main
from jembench.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def test_names_resolve_to_the_shipped_files_and_the_checkout_paths_are_the_same_files():
    for name in bundled.CATALOG:
        path = bundled.resolve(f"bundled:{name}")
        assert path == bundled.DIRECTORY / f"{name}.pt" and path.is_file()
        assert (ROOT / "checkpoints" / f"{name}.pt").resolve() == path  # README paths stay true in a checkout
    assert bundled.resolve("bundled:jem-digits.pt") == bundled.resolve("bundled:jem-digits")
    assert bundled.resolve("some/file.pt") == Path("some/file.pt")


def test_an_unknown_name_is_one_line_naming_the_shipped_ones():
    with pytest.raises(CheckpointError) as err:
        jembench.load("bundled:jem-cifar")
    text = str(err.value)
    assert "\n" not in text and "bundled:jem-digits" in text and "inspect bundled:" in text


def test_inspect_lists_them():
    out = CliRunner().invoke(main, ["inspect", "bundled:"])
    assert out.exit_code == 0 and all(f"bundled:{n}" in out.output for n in bundled.CATALOG)
    listed = json.loads(CliRunner().invoke(main, ["inspect", "bundled:", "--json"]).output)
    assert [d["name"] for d in listed] == [f"bundled:{n}" for n in bundled.CATALOG]
    assert all(d["bytes"] > 100_000 for d in listed)


def test_evaluators_take_bundled_names_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    result = CliRunner().invoke(main, ["clf", "bundled:jem-digits", "bundled:baseline-digits", "--n", "40",
                                       "--out-dir", "out", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [e["checkpoint"]["name"] for e in doc["evaluations"]] == ["jem-digits", "baseline-digits"]


def test_the_feature_extractor_can_be_named_bundled():
    from jembench.metrics import fidelity

    ext = fidelity.resolve_extractor("bundled:digits-reference-classifier", "digits")
    assert ext.name == "digits-wrn"  # the shipped file keeps its registered name (and metric columns)


def test_every_data_file_of_the_package_is_declared_package_data():
    """A wheel holds only what pyproject declares: each non-Python file under jembench/ must match a pattern."""
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["jembench"]
    package = ROOT / "jembench"
    files = [p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()
             and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert {"bundled/jem-digits.pt", "data/digits.npz"} <= set(files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []


def test_train_resumes_from_a_bundled_name(tmp_path):
    result = CliRunner().invoke(main, ["train", "--resume", "bundled:baseline-digits", "--epochs", "12",
                                       "--out", str(tmp_path / "more.pt")])
    assert result.exit_code == 2 and "already trained for 12 epochs" in result.output  # it read the shipped file
