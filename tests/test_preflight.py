"""Preflight: every problem knowable before a model pass is reported together, one line each, exit 2, nothing
computed or written; options named as the user typed them."""

import pytest
import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.errors import PreflightError
from jembench.settings import SettingError
from jembench.models.wrn import JEMNet
from test_data import no_md5, write_cifar10  # noqa: F401 - no_md5 is a fixture

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def cifar(tmp_path, no_md5):  # noqa: F811
    """Tiny real-format CIFAR-10 files (4 images per batch file); nothing else present."""
    write_cifar10(tmp_path / "data", n=4)
    return tmp_path / "data"


def jem_file(path, n_classes, channels=3):
    """A JEM-format file (model_state_dict), random weights, as JEM's authors saved theirs."""
    torch.manual_seed(0)
    torch.save({"model_state_dict": JEMNet(10, 1, "none", channels, n_classes).state_dict()}, path)
    return str(path)


def errors(result):
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("jembench: error: ") for line in lines), result.stderr
    return [line[len("jembench: error: "):] for line in lines]


def test_run_all_reports_every_problem_at_once_before_any_pass(tmp_path, cifar, forward_count, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached Inception weights
    c100 = jem_file(tmp_path / "c100.pt", 100)
    missing = str(tmp_path / "absent.pt")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "run-all", c100, missing, "--dataset", "cifar10", "--data-dir", str(cifar), "--offline", "--device", "cpu",
        "--set", "calib.bins=0", "--set", "gen.pcd_rounds=5", "--set", "ood.out=svhn,noise", "--out-dir", str(out)])
    assert result.exit_code == 2, result.output
    lines = errors(result)
    want = ["--set calib.bins must be >= 1, got 0",  # settings, named as typed
            "--set gen.pcd_rounds set but no PCD protocol chosen: add --set gen.protocol=pcd",
            "absent.pt",  # a checkpoint that does not load
            "checkpoint 'c100' has 100 classes but dataset 'cifar10' has 10",  # clf, calib, robust (once)
            "dataset 'svhn' not found",  # an absent OOD set
            "offline and torch-fidelity's Inception weights are not here"]  # generation's extractor
    for w in want:
        assert sum(w in line for line in lines) == 1, (w, lines)
    assert len(lines) == len(want), lines
    assert forward_count() == 0 and not out.exists()


def test_a_100_class_checkpoint_against_cifar10_is_refused_at_once(tmp_path, cifar, forward_count):
    c100 = jem_file(tmp_path / "c100.pt", 100)
    for argv in (["ood", c100, "--in", "cifar10", "--out", "noise"], ["clf", c100, "--dataset", "cifar10"],
                 ["run-all", c100, "--dataset", "cifar10", "--only", "ood,clf"]):
        result = CliRunner().invoke(main, [*argv, "--data-dir", str(cifar), "--out-dir", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert any("100 classes" in line and "'cifar10'" in line for line in errors(result)), result.stderr
    assert forward_count() == 0 and not (tmp_path / "o").exists()


def test_the_api_raises_all_setting_problems_together(tmp_path, cifar, forward_count):
    c10 = jem_file(tmp_path / "c10.pt", 10)
    with pytest.raises(SettingError) as err:  # one error of its own type, both lines in it
        jembench.robust(c10, eot=0, steps=0, attacks="apgd-dlr,pgd", data_dir=cifar, n=2)
    assert sorted(err.value.lines()) == ["--eot must be >= 1, got 0", "--steps must be >= 1, got 0"]
    with pytest.raises(PreflightError) as err:  # settings fine: the data and the checkpoint disagree
        jembench.gen(c10, data_dir=tmp_path / "nothing", protocol="buffer", metrics="fid", offline=True,
                     feature_extractor=str(tmp_path / "none.pt"))
    problems = "\n".join(err.value.problems)
    assert "dataset 'cifar10' not found" in problems and "no replay buffer" in problems
    assert f"--feature-extractor '{tmp_path / 'none.pt'}'" in problems and len(err.value.problems) == 3
    assert forward_count() == 0


def test_a_valid_run_passes_the_preflight(tmp_path, cifar):
    c10 = jem_file(tmp_path / "c10.pt", 10)
    result = jembench.clf(c10, data_dir=cifar, n=4, progress=False)
    assert result.evaluations[0].metrics["n"] == 4


def test_extractor_named_as_a_bundled_checkpoint_passes_and_a_wrong_one_is_one_line(tmp_path):
    from jembench.preflight import extractor_problems

    kw = dict(fid_weights=None, offline=True, option="--set gen.feature_extractor")
    assert extractor_problems("bundled:digits-reference-classifier", "cifar10", **kw) == []
    assert extractor_problems("digits-wrn", "digits", **kw) == []
    (wrong,) = extractor_problems("bundled:no-such-file", "digits", **kw)
    assert "no bundled checkpoint 'no-such-file'" in wrong
    (absent,) = extractor_problems(str(tmp_path / "x.pt"), "digits", **kw)
    assert absent.startswith("--set gen.feature_extractor") and "neither a known extractor" in absent
