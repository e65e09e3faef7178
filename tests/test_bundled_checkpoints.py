"""The bundled checkpoints are what checkpoints/README.md says: the commands written there, their accuracies, sizes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

import jembench
from jembench.cli.train_cmd import train_cmd
from jembench.data import get_dataset

CKPT = Path(__file__).resolve().parents[1] / "checkpoints"
README = (CKPT / "README.md").read_text()


def readme_commands() -> dict[str, list[str]]:
    """``--out`` file name -> the arguments of each ``jembench train`` command in the README's code blocks."""
    joined = re.sub(r"\\\n\s*", " ", README)
    out = {}
    for line in joined.splitlines():
        m = re.match(r"(?:\w+=\S+\s+)*jembench train (.*)", line)  # a command line, with env settings first
        if m:
            args = shlex.split(m.group(1))
            out[Path(args[args.index("--out") + 1]).name] = args
    return out


@pytest.mark.parametrize("name,correct,has_buffer", [("jem-digits.pt", 346, True), ("baseline-digits.pt", 351, False)])
def test_bundled_checkpoint_matches_its_readme(name, correct, has_buffer):
    path = CKPT / name
    assert path.stat().st_size < 5e6  # the limit
    model = jembench.load(path)
    i = model.info
    assert (i.family, i.dataset, i.arch_label, i.norm, i.image_size) == ("jembench", "digits", "WRN-10-1", "none",
                                                                          (8, 8))
    test = get_dataset("digits", "test")
    with torch.no_grad():
        predicted = torch.cat([model.logits(x).argmax(1) for x, _ in test.batches(360, model)])
    n_correct = int((predicted == test.labels).sum())
    assert n_correct / 360 >= 0.95 and n_correct == correct and f"{100 * correct / 360:.1f}% ({correct}/360)" in README
    assert i.train_config["test_accuracy"] == pytest.approx(correct / 360)
    assert (model.replay_buffer is not None) == has_buffer
    # the README's command is the one that wrote the file: every option it sets is in the stored config
    params = train_cmd.make_context("train", list(readme_commands()[name])).params
    params["decay_epochs"] = [int(v) for v in params["decay_epochs"].split(",")]
    stored = i.train_config
    for key, value in params.items():
        if key in stored and value is not None:
            assert stored[key] == value, key
    assert stored["px_weight"] == (1.0 if has_buffer else 0.0) and stored["epochs_done"] == stored["epochs"]

