"""Plumbing shared by the evaluators: a JEM-format file (no dataset, no image size recorded) takes its image
size from the dataset the user names, in every evaluator that names one."""

import pytest
import torch

import jembench
from jembench.errors import JembenchError
from jembench.evaluators.common import load_models


@pytest.fixture
def jem_format_digits(tmp_path, tiny_jem):
    path = tmp_path / "jem-digits-as-jem.pt"
    torch.save({"model_state_dict": tiny_jem.net.state_dict()}, path)  # JEM's own layout: records no dataset
    return path, tiny_jem


def test_named_dataset_sets_the_image_size_of_jem_files(jem_format_digits):
    path, _ = jem_format_digits
    assert load_models([path])[0].info.image_size == (32, 32)  # JEM's assumption when nothing is named
    model = load_models([path], dataset="digits")[0]
    assert model.info.image_size == (8, 8) and model.info.dataset == "digits"


def test_clf_and_ood_evaluate_a_jem_format_digits_file(jem_format_digits):
    path, tiny = jem_format_digits
    acc = jembench.clf([path], "digits", n=40).evaluations[0].metrics["accuracy"]
    assert acc == jembench.clf([tiny], "digits", n=40).evaluations[0].metrics["accuracy"]
    ood = jembench.ood([path], "digits", out=["noise"], scores=["msp"], n=40, bootstrap=0, figures=False)
    assert 0.0 <= ood.evaluations[0].metrics["auroc/msp/noise"] <= 1.0


def test_named_dataset_with_other_class_count_is_a_one_line_error(jem_format_digits):
    path, _ = jem_format_digits
    with pytest.raises(JembenchError, match="cifar100"):
        load_models([path], dataset="cifar100")


def test_output_file_names_are_safe():
    from jembench.io import slugify

    assert slugify("jem-digits") == "jem-digits"
    assert slugify("../<script>alert(1)</script>.pt") == "script_alert_1_script_.pt"
    assert slugify(".hidden_") == "hidden" and slugify("///", "model") == "model"
