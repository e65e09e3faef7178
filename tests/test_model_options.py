"""Model overrides (--head, --norm, --dataset) on every command that loads a checkpoint, and robust's threat model
as --threat (the former --norm still read, with a deprecation warning, when its value is a threat model)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.errors import JembenchError
from jembench.evaluators.registry import REGISTRY
from jembench.models import JEMNet
from jembench.presets import get_preset

FAST = {"clf": [], "calib": ["--bootstrap", "0"], "ood": ["--out", "noise", "--bootstrap", "0", "--score", "msp"],
        "robust": ["--threat", "linf", "--eps", "0", "--steps", "1", "--n", "8", "--no-probe"]}


def groupnorm_jem(path):
    """A JEM file of a GroupNorm (norm "layer") model: its keys are InstanceNorm's, so only --norm layer says it."""
    torch.manual_seed(0)
    torch.save({"model_state_dict": JEMNet(10, 1, "layer", 1, 10).state_dict()}, path)
    return path


def test_every_command_that_loads_a_checkpoint_takes_the_model_overrides():
    for name, spec in REGISTRY.items():
        assert {"dataset", "head", "norm"} <= set(spec.shared), name
    for command in ["inspect", "run-all", *REGISTRY]:
        params = main.get_command(None, command).params
        flags = {opt for p in params for opt in getattr(p, "opts", [])}
        assert {"--head", "--norm"} <= flags and ("--dataset" in flags or "--in" in flags), command


@pytest.mark.parametrize("command", sorted(FAST))
def test_norm_override_reaches_the_model(command, tmp_path):
    path = groupnorm_jem(tmp_path / "gn.pt")
    for extra, norm in (([], "instance"), (["--norm", "layer", "--head", "f"], "layer")):
        args = [command, str(path), *(["--in"] if command == "ood" else ["--dataset"]), "digits", *FAST[command],
                *extra, "--out-dir", str(tmp_path / command / norm), "--json"]
        if command != "robust":
            args += ["--n", "20"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        checkpoint = json.loads(result.stdout)["evaluations"][0]["checkpoint"]
        assert checkpoint["norm"] == norm and checkpoint["head"] == ("f" if extra else "ccf")


def test_threat_option_and_the_former_norm_spelling(tmp_path, caplog):
    spec = REGISTRY["robust"]
    with caplog.at_level(logging.WARNING, logger="jembench"):
        settings, shared = spec.parse({"norm": "linf,l2"})
    assert settings.threat == ("linf", "l2") and shared.norm is None
    assert "--norm linf,l2 is deprecated: use --threat linf,l2" in caplog.text
    settings, shared = spec.parse({"norm": "layer"})  # a normalisation layer: the model override, no warning
    assert settings.threat == ("linf",) and shared.norm == "layer"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jembench"):
        assert spec.parse({"norms": ("l2",)})[0].threat == ("l2",)  # the former API alias
    assert "deprecated" in caplog.text
    with pytest.raises(JembenchError, match="set the same thing; give --threat only"):
        spec.parse({"threat": "l2", "norms": "linf"})
    with pytest.raises(JembenchError, match="--norm must be one of"):
        spec.parse({"norm": "l3"})


def test_run_all_set_robust_norm_follows(caplog):
    with caplog.at_level(logging.WARNING, logger="jembench"):
        preset = get_preset("quick").override({"robust.norm": "l2"})
    assert preset.settings("robust").threat == ("l2",)
    assert "--set robust.norm=l2 is deprecated: use --set robust.threat=l2" in caplog.text
    assert get_preset("quick").override({"robust.threat": "linf,l2"}).settings("robust").threat == ("linf", "l2")


def test_robust_command_reads_the_former_norm_with_a_warning(tmp_path):
    result = CliRunner().invoke(main, ["robust", "bundled:baseline-digits", "--norm", "l2", "--eps", "0", "--n", "4",
                                       "--steps", "1", "--no-probe", "--out-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert "--norm l2 is deprecated: use --threat l2" in result.stderr
    assert json.loads(result.stdout)["evaluations"][0]["protocol"]["threat_model"] == "l2"
    assert "threat" in jembench.robust.__signature__.parameters


def test_hints_raised_while_running_name_both_spellings():
    """A message from inside an evaluator cannot tell gen from run-all: it names the option as both write it."""
    from jembench.settings import hint

    assert hint("robust", "eot") == "--eot (run-all: --set robust.eot)"
    assert hint("gen", "feature_extractor", "PATH") == \
        "--feature-extractor PATH (run-all: --set gen.feature_extractor=PATH)"
    used = {"robust": ("steps", "eot", "attacks"), "gen": ("pcd_rounds", "protocol", "n", "feature_extractor"),
            "calib": ("bins",)}  # the options the run-time hints name: each must be an option of its evaluator
    assert all(REGISTRY[e].settings.field(name) is not None for e, names in used.items() for name in names)
