"""``jembench datasets``: listing, --json, presence under --data-dir, --download errors, help."""

from __future__ import annotations

import json

from click.testing import CliRunner

from jembench.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_lists_every_dataset_with_sizes_and_root(tmp_path):
    r = _run("datasets", "--data-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    for name in ("cifar10", "cifar100", "svhn", "celeba", "digits"):
        assert name in r.output
    assert "26032" in r.output and "bundled" in r.output and f"data root: {tmp_path}" in r.output
    assert f"jembench datasets --download svhn --data-dir {tmp_path}" in r.output
    assert "noise, uniform, constant, interp, rotated" in r.output


def test_json_reports_presence_per_split(tmp_path):
    (tmp_path / "test_32x32.mat").write_bytes(b"")  # presence = the expected files exist (md5 is checked on load)
    r = _run("datasets", "svhn", "digits", "--data-dir", str(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    rows = {d["name"]: d for d in doc["datasets"]}
    assert set(rows) == {"svhn", "digits"} and doc["data_dir"] == str(tmp_path)
    assert rows["svhn"]["present"] == {"train": False, "test": True}
    assert rows["svhn"]["missing"]["train"] == [str(tmp_path / "train_32x32.mat")]
    assert rows["svhn"]["state"] == {"train": "absent", "test": "corrupt"}  # what the loaders say (issue 12)
    assert "corrupted or incomplete" in rows["svhn"]["problems"]["test"]
    assert rows["svhn"]["sizes"] == {} and rows["svhn"]["shape"] == [3, 32, 32]  # nothing readable on disk
    assert rows["svhn"]["expected_sizes"] == {"train": 73257, "test": 26032}
    assert rows["digits"]["location"] == "bundled" and "interp" in doc["synthetic_ood"]


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_DATA", str(tmp_path))
    doc = json.loads(_run("datasets", "--json").stdout)
    assert doc["data_dir"] == str(tmp_path)


def test_errors_are_one_line_exit_2(tmp_path):
    r = _run("datasets", "--download", "--data-dir", str(tmp_path))
    assert r.exit_code == 2 and r.stderr.strip() == ("jembench: error: name the datasets to download, e.g. "
                                                       "jembench datasets --download cifar10 svhn")
    r = _run("datasets", "cifar-10")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "known: celeba, cifar10" in r.stderr
    assert "Traceback" not in r.output


def test_download_of_bundled_needs_no_network(tmp_path):
    r = _run("datasets", "--download", "digits", "--data-dir", str(tmp_path))
    assert r.exit_code == 0 and "bundled" in r.output


def test_help_teaches():
    r = _run("datasets", "--help")
    assert r.exit_code == 0
    for text in ("jembench datasets --download cifar10 svhn --data-dir", "$JEMBENCH_DATA", "npz:PATH",
                 "folder:PATH", "center crop", "cifar-10-batches-py"):
        assert text in r.output


def test_generic_sources_are_read_and_sized(tmp_path):
    import numpy as np

    np.savez(tmp_path / "two.npz", x_train=np.zeros((5, 8, 8, 3), np.uint8), y_train=np.arange(5),
             x_test=np.zeros((2, 8, 8, 3), np.uint8), y_test=np.array([0, 7]))
    np.savez(tmp_path / "one.npz", x=np.zeros((4, 1, 6, 6), np.uint8))
    doc = json.loads(_run("datasets", f"npz:{tmp_path}/two.npz", f"npz:{tmp_path}/one.npz", "--json").stdout)
    two, one = doc["datasets"]
    assert (two["shape"], two["n_classes"], two["sizes"], two["present"]) == (  # no 'classes' array: not guessed
        [3, 8, 8], None, {"train": 5, "test": 2}, {"train": True, "test": True})
    assert (one["shape"], one["n_classes"], one["sizes"]) == ([1, 6, 6], None, {"all": 4})
    assert "one split 'all'" in one["description"] and one["location"] == str(tmp_path / "one.npz")
    r = _run("datasets", f"npz:{tmp_path}")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "is a directory" in r.stderr
