"""Shared test setup: one torch thread (CI has 2 cores), deterministic algorithms, small fixtures."""

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("JEMBENCH_DATA", os.path.join(os.path.dirname(__file__), "_no_data_here"))


@pytest.fixture
def tiny_jem():
    """A randomly initialised WRN-10-1 JEM for 1x8x8 digits (fast on CPU)."""
    from jembench.models.hybrid import HybridModel, ModelInfo
    from jembench.models.wrn import JEMNet

    torch.manual_seed(0)
    net = JEMNet(10, 1, "none", 1, 10)
    info = ModelInfo(family="jembench", source_format="jembench", architecture="wrn", n_classes=10, in_channels=1,
                     image_size=(8, 8), depth=10, width=1, norm="none", dataset="digits", name="tiny")
    return HybridModel(net, info)


@pytest.fixture
def forward_count():
    """Every nn.Module call in the test, counted by a global hook: ``forward_count()`` -> calls so far."""
    calls = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda module, args: calls.append(module))
    yield lambda: len(calls)
    handle.remove()
