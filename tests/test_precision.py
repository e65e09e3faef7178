"""--precision: bf16 autocast on CPU stays within the stated tolerance of fp32; fp16 only on CUDA; CUDA settings."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.runtime import accelerate, autocast, precision_problem, to_device

DEMO = Path(__file__).resolve().parent.parent / "checkpoints" / "jem-digits.pt"
# The tolerance stated in README ("Precision"): bf16 against fp32 on the demo checkpoint (360 digits test images)
ABS = {"accuracy": 0.01, "error": 0.01, "ece": 0.01, "adaptive_ece": 0.01, "classwise_ece": 0.01, "auroc": 0.01}
REL = {"nll": 0.02, "brier": 0.02, "temperature_scaling/temperature": 0.02}


def _metrics(precision):
    kw = dict(device="cpu", progress=False, precision=precision)
    evs = (jembench.clf(DEMO, **kw).evaluations + jembench.calib(DEMO, bootstrap=0, **kw).evaluations
           + jembench.ood(DEMO, out="noise,interp,rotated", scores="logp,msp", bootstrap=0, figures=False,
                          **kw).evaluations)
    assert all(e.protocol["precision"] == precision for e in evs)  # recorded in every protocol
    return {f"{e.evaluator}:{k}": v for e in evs for k, v in e.metrics.items()}


def test_bf16_on_cpu_stays_within_the_stated_tolerance_of_fp32():
    fp32, bf16 = _metrics("fp32"), _metrics("bf16")
    assert fp32.keys() == bf16.keys()
    checked = 0
    for key, ref in fp32.items():
        name = key.split(":", 1)[1]
        base = name.split("/")[0]
        if name in REL:
            assert bf16[key] == pytest.approx(ref, rel=REL[name]), key
        elif base in ABS:
            assert abs(bf16[key] - ref) <= ABS[base], key
        else:
            continue
        checked += 1
    assert checked >= 12
    assert fp32 != bf16  # bf16 really ran (the logits differ)


def test_autocast_and_its_limits():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with autocast("bf16", torch.device("cpu")):
        assert (x @ w).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert (x @ w).dtype == torch.float32
    assert precision_problem("fp16", torch.device("cpu")).startswith("fp16 needs a CUDA device")
    assert precision_problem("fp16", torch.device("cuda")) is None
    assert precision_problem("bf16", torch.device("cpu")) is None


def test_fp16_on_cpu_is_one_line_error(tiny_jem, tmp_path):
    with pytest.raises(jembench.JembenchError, match="--precision fp16: fp16 needs a CUDA device"):
        jembench.clf(tiny_jem, n=4, device="cpu", precision="fp16", progress=False)
    r = CliRunner().invoke(main, ["clf", str(DEMO), "--device", "cpu", "--precision", "fp16", "--n", "4"])
    assert r.exit_code != 0 and "fp16 needs a CUDA device" in r.output and "Traceback" not in r.output


def test_cuda_settings_are_applied_only_on_cuda():
    net = torch.nn.Conv2d(3, 4, 3)
    before = torch.backends.cudnn.benchmark
    try:
        assert accelerate(net, torch.device("cpu")).weight.is_contiguous()
        out = accelerate(net, torch.device("cuda"))  # the CUDA branch, on CPU weights: no GPU needed
        assert out.weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before
    x = torch.ones(2)
    assert to_device(x, torch.device("cpu")) is x
