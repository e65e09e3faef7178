"""jembench.load reproduces the original JEM / JEM++ networks: logits and log p(x) within 1e-4.

The reference below is written independently of jembench.models, in the style of the authors' code:
JEM's ``wideresnet.py`` (``get_norm``, ``wide_basic``, ``Wide_ResNet`` with its unused ``linear``,
``avg_pool2d(out, 8)``), JEM's ``norms.ActNorm`` and ``F`` / ``CCF`` heads, and JEM++'s "yopo" trunk that
registers ``layer_one`` / ``other_layers`` as second names for the same modules. Checkpoints are written in
each format with ``torch.save`` exactly as those repositories do, then read back with ``jembench.load``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F_

import jembench
from jembench.errors import CheckpointError
from jembench.models import describe

TOL = 1e-4


# --- reference implementation (JEM / JEM++ style) -----------------------------------------------------
class Identity(nn.Module):
    def forward(self, x):
        return x


class ActNorm(nn.Module):
    def __init__(self, num_features, logdet=True):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self.logdet = logdet

    def initialize(self, input):
        with torch.no_grad():
            flatten = input.permute(1, 0, 2, 3).contiguous().view(input.shape[1], -1)
            mean = flatten.mean(1).unsqueeze(1).unsqueeze(2).unsqueeze(3).permute(1, 0, 2, 3)
            std = flatten.std(1).unsqueeze(1).unsqueeze(2).unsqueeze(3).permute(1, 0, 2, 3)
            self.loc.data.copy_(-mean)
            self.scale.data.copy_(1 / (std + 1e-6))

    def forward(self, input):
        if self.initialized.item() == 0:
            self.initialize(input)
            self.initialized.fill_(1)
        return self.scale * (input + self.loc)


def get_norm(n_filters, norm):
    if norm is None:
        return Identity()
    elif norm == "batch":
        return nn.BatchNorm2d(n_filters, momentum=0.9)
    elif norm == "instance":
        return nn.InstanceNorm2d(n_filters, affine=True)
    elif norm == "layer":
        return nn.GroupNorm(1, n_filters)
    elif norm == "act":
        return ActNorm(n_filters, False)


class wide_basic(nn.Module):
    def __init__(self, in_planes, planes, dropout_rate, stride=1, norm=None, leak=.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = get_norm(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = Identity() if dropout_rate == 0.0 else nn.Dropout(p=dropout_rate)
        self.bn2 = get_norm(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        out = self.dropout(self.conv1(self.lrelu(self.bn1(x))))
        out = self.conv2(self.lrelu(self.bn2(out)))
        out += self.shortcut(x)
        return out


class Wide_ResNet(nn.Module):
    def __init__(self, depth, widen_factor, num_classes=10, input_channels=3, norm=None, leak=.2,
                 dropout_rate=0.0, yopo=False):
        super().__init__()
        self.in_planes = 16
        self.norm = norm
        self.lrelu = nn.LeakyReLU(leak)
        assert (depth - 4) % 6 == 0, "Wide-resnet depth should be 6n+4"
        n = (depth - 4) // 6
        k = widen_factor
        nStages = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(input_channels, nStages[0], kernel_size=3, stride=1, padding=1, bias=True)
        if yopo:  # JEM++'s wideresnet_yopo: the same modules under a second name
            self.layer_one = self.conv1
            self.other_layers = nn.ModuleList()
        self.layer1 = self._wide_layer(wide_basic, nStages[1], n, dropout_rate, stride=1)
        self.layer2 = self._wide_layer(wide_basic, nStages[2], n, dropout_rate, stride=2)
        self.layer3 = self._wide_layer(wide_basic, nStages[3], n, dropout_rate, stride=2)
        self.bn1 = get_norm(nStages[3], self.norm)
        if yopo:
            for m in (self.layer1, self.layer2, self.layer3, self.bn1):
                self.other_layers.append(m)
        self.last_dim = nStages[3]
        self.linear = nn.Linear(nStages[3], num_classes)

    def _wide_layer(self, block, planes, num_blocks, dropout_rate, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, dropout_rate, stride, norm=self.norm))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.lrelu(self.bn1(out))
        out = F_.avg_pool2d(out, 8)
        return out.view(out.size(0), -1)


class F(nn.Module):
    def __init__(self, depth=28, width=2, norm=None, dropout_rate=0.0, n_classes=10, input_channels=3, yopo=False):
        super().__init__()
        self.f = Wide_ResNet(depth, width, input_channels=input_channels, norm=norm, dropout_rate=dropout_rate,
                             yopo=yopo)
        self.energy_output = nn.Linear(self.f.last_dim, 1)
        self.class_output = nn.Linear(self.f.last_dim, n_classes)

    def forward(self, x, y=None):
        return self.energy_output(self.f(x)).squeeze()

    def classify(self, x):
        return self.class_output(self.f(x)).squeeze()


class CCF(F):
    def forward(self, x, y=None):
        logits = self.classify(x)
        if y is None:
            return logits.logsumexp(1)
        return torch.gather(logits, 1, y[:, None])


# --- helpers --------------------------------------------------------------------------------------------
def make_reference(depth=10, width=1, norm=None, n_classes=10, in_ch=3, uncond=False, yopo=False, seed=0):
    """A reference network with every parameter and statistic randomised (so each one matters)."""
    torch.manual_seed(seed)
    net = (F if uncond else CCF)(depth, width, norm=norm, n_classes=n_classes, input_channels=in_ch, yopo=yopo)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("running_mean") or (name.endswith(("bn1.bias", "bn2.bias"))):
                t.copy_(0.1 * torch.randn_like(t))
            elif name.endswith(("bn1.weight", "bn2.weight")):
                t.copy_(1 + 0.2 * torch.randn_like(t))
    if norm == "act":  # ActNorm initialises from the first batch it sees, as in training
        net.train()
        net.classify(torch.randn(8, in_ch, 32, 32))
    return net.eval()


def inputs(in_ch=3, n=4, seed=1):
    return torch.rand(n, in_ch, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def assert_same(model, ref, x, uncond=False):
    with torch.no_grad():
        want_logits, want_logp = ref.classify(x), ref(x)
        logits, log_px = model.logits_and_log_px(x)
        assert torch.allclose(model.logits(x), want_logits, atol=TOL, rtol=0)
        assert torch.allclose(logits, want_logits, atol=TOL, rtol=0)
        assert torch.allclose(log_px, want_logp, atol=TOL, rtol=0)
        assert torch.allclose(model.energy(x), -want_logp, atol=TOL, rtol=0)
        y = torch.arange(x.shape[0]) % want_logits.shape[1]
        want_pxy = want_logits.gather(1, y[:, None]).squeeze(1) if not uncond else \
            want_logp + want_logits.log_softmax(1).gather(1, y[:, None]).squeeze(1)
        assert torch.allclose(model.log_pxy(x, y), want_pxy, atol=TOL, rtol=0)


def save_jem(ref, path, buffer=None, **kw):
    """What JEM's and JEM++'s training scripts write."""
    torch.save({"model_state_dict": ref.state_dict(), "replay_buffer": buffer}, path, **kw)
    return path


# --- JEM files: every norm, depth, width, class count, channel count --------------------------------------
@pytest.mark.parametrize("norm", [None, "batch", "instance", "act"])
def test_jem_every_norm(tmp_path, norm):
    ref = make_reference(norm=norm)
    buf = torch.rand(6, 3, 32, 32) * 2 - 1
    model = jembench.load(save_jem(ref, tmp_path / "jem.pt", buf))
    assert_same(model, ref, inputs())
    i = model.info
    assert (i.family, i.source_format, i.depth, i.width, i.norm, i.n_classes, i.in_channels) == \
        ("jem", "jem", 10, 1, norm or "none", 10, 3)
    assert i.bn_momentum == (0.9 if norm == "batch" else None)
    assert torch.equal(model.replay_buffer, buf)
    assert not model.training


def test_groupnorm_needs_the_layer_override(tmp_path):
    ref = make_reference(norm="layer")
    path = save_jem(ref, tmp_path / "gn.pt")
    guessed = jembench.load(path)
    assert guessed.info.norm == "instance" and any("norm='layer'" in n for n in guessed.info.notes)
    x = inputs()
    with torch.no_grad():  # InstanceNorm and GroupNorm(1, C) really differ: the note is not cosmetic
        assert not torch.allclose(guessed.logits(x), ref.classify(x), atol=TOL)
    model = jembench.load(path, norm="layer")
    assert model.info.norm == "layer"
    assert_same(model, ref, x)


@pytest.mark.parametrize("depth,width,n_classes,in_ch,norm", [
    (10, 1, 10, 1, None), (16, 2, 100, 3, "batch"), (16, 1, 100, 1, "instance"), (10, 2, 10, 3, "act"),
])
def test_jem_depth_width_classes_channels(tmp_path, depth, width, n_classes, in_ch, norm):
    ref = make_reference(depth, width, norm, n_classes, in_ch)
    model = jembench.load(save_jem(ref, tmp_path / "jem.pt"))
    i = model.info
    assert (i.depth, i.width, i.n_classes, i.in_channels, i.norm) == (depth, width, n_classes, in_ch, norm or "none")
    assert i.mean == (0.5,) * in_ch and i.value_range == (-1.0, 1.0)
    assert model.replay_buffer is None
    assert_same(model, ref, inputs(in_ch))


@pytest.mark.parametrize("norm", [None, "batch"])
def test_f_head_uncond(tmp_path, norm):
    ref = make_reference(norm=norm, uncond=True)
    path = save_jem(ref, tmp_path / "f.pt")
    model = jembench.load(path, head="f")
    assert model.info.head == "f"
    assert_same(model, ref, inputs(), uncond=True)
    with torch.no_grad():  # without the override, log p(x) is the CCF reading, not the energy head
        default = jembench.load(path)
        assert default.info.head == "ccf"
        assert not torch.allclose(default.log_px(inputs()), ref(inputs()), atol=TOL)


def test_bare_state_dict_and_dataparallel(tmp_path):
    ref = make_reference(16, 2, "batch", 100)
    torch.save(ref.state_dict(), tmp_path / "bare.pt")
    bare = jembench.load(tmp_path / "bare.pt")
    assert bare.info.source_format == "bare-state-dict" and bare.replay_buffer is None
    assert_same(bare, ref, inputs())
    old = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}  # torch < 0.4.1
    torch.save(old, tmp_path / "old.pt")
    assert_same(jembench.load(tmp_path / "old.pt"), ref, inputs())
    dp = nn.DataParallel(ref)  # on CPU DataParallel only wraps; its state dict has the module. prefix
    assert all(k.startswith("module.") for k in dp.state_dict())
    torch.save({"model_state_dict": dp.state_dict(), "replay_buffer": None}, tmp_path / "dp.pt")
    model = jembench.load(tmp_path / "dp.pt")
    assert any("module." in n for n in model.info.notes)
    assert_same(model, ref, inputs())


def test_legacy_serialisation(tmp_path):
    ref = make_reference(norm="batch")
    model = jembench.load(save_jem(ref, tmp_path / "old.pt", _use_new_zipfile_serialization=False))
    assert_same(model, ref, inputs())


# --- JEM++ yopo files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm,in_ch,n_classes", [("batch", 3, 10), (None, 1, 100)])
def test_jempp_yopo(tmp_path, norm, in_ch, n_classes):
    ref = make_reference(10, 2, norm, n_classes, in_ch, yopo=True)
    sd = ref.state_dict()
    assert any(k.startswith("f.layer_one.") for k in sd) and any(k.startswith("f.other_layers.2.") for k in sd)
    assert ("f.other_layers.3.running_mean" in sd) == (norm == "batch")
    buf = (torch.rand(5, in_ch, 32, 32) * 2 - 1).clamp(-1, 1)
    model = jembench.load(save_jem(ref, tmp_path / "jempp.pt", buf))
    assert model.info.family == "jem++" and model.info.source_format == "jem++"
    assert model.info.bn_momentum == (0.9 if norm == "batch" else None)
    assert any("yopo" in n for n in model.info.notes)
    assert torch.equal(model.replay_buffer, buf)
    assert_same(model, ref, inputs(in_ch))


def test_jempp_bn_momentum_is_the_authors(tmp_path):
    ref = make_reference(norm="batch", yopo=True)
    model = jembench.load(save_jem(ref, tmp_path / "jempp.pt"))
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.9}


def test_yopo_alias_that_differs_is_refused(tmp_path):
    ref = make_reference(yopo=True)
    sd = ref.state_dict()
    sd["f.layer_one.weight"] = sd["f.layer_one.weight"] + 1
    torch.save({"model_state_dict": sd}, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="alias f.layer_one.weight differs"):
        jembench.load(tmp_path / "edited.pt")


# --- image size and dataset ------------------------------------------------------------------------------
def test_image_size_from_dataset_buffer_or_default(tmp_path):
    ref = make_reference(10, 1, None, 10, 1)
    path = save_jem(ref, tmp_path / "m.pt")
    assert jembench.load(path).info.image_size == (32, 32)
    digits = jembench.load(path, dataset="digits")
    assert digits.info.image_size == (8, 8) and digits.info.dataset == "digits"
    with torch.no_grad():  # the WRN pools adaptively, so the 8x8 input runs
        assert digits.logits(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    save_jem(ref, tmp_path / "b.pt", torch.zeros(3, 1, 28, 28))
    assert jembench.load(tmp_path / "b.pt").info.image_size == (28, 28)
    assert jembench.load(path, image_size=(16, 16)).info.image_size == (16, 16)
    save_jem(ref, tmp_path / "flat.pt", torch.zeros(3, 64))  # not [N, C, H, W]: ignored, said so, size not taken
    flat = jembench.load(tmp_path / "flat.pt")
    assert flat.replay_buffer is None and flat.info.image_size == (32, 32)
    assert any("ignored replay_buffer (3, 64)" in n for n in flat.info.notes)


def test_dataset_contradicting_class_count_or_channels(tmp_path):
    path = save_jem(make_reference(10, 1, None, 100, 1), tmp_path / "c100.pt")
    with pytest.raises(CheckpointError, match="100 classes but dataset 'digits' has 10"):
        jembench.load(path, dataset="digits")
    path3 = save_jem(make_reference(10, 1, None, 10, 3), tmp_path / "rgb.pt")
    with pytest.raises(CheckpointError, match="3-channel"):
        jembench.load(path3, dataset="digits")
    with pytest.raises(CheckpointError, match="unknown dataset"):
        jembench.load(path3, dataset="no-such-set")
    c100 = save_jem(make_reference(10, 1, None, 100, 3), tmp_path / "cifar100.pt")
    with pytest.raises(CheckpointError, match="100 classes but dataset 'cifar10' has 10"):
        jembench.load(c100, dataset="cifar10")
    assert jembench.load(c100, dataset="cifar100").info.image_size == (32, 32)


def test_overrides_are_checked(tmp_path):
    path = save_jem(make_reference(), tmp_path / "m.pt")
    with pytest.raises(TypeError, match="unknown override"):
        jembench.load(path, sigma=0.1)
    with pytest.raises(CheckpointError, match="unknown head"):
        jembench.load(path, head="energy")
    with pytest.raises(CheckpointError, match="unknown norm"):
        jembench.load(path, norm="group")
    m = jembench.load(path, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), train_sigma=0.03, name="x")
    assert m.info.std[2] == pytest.approx(0.2616) and m.info.train_sigma == 0.03 and m.info.name == "x"
    pix = torch.rand(2, 3, 32, 32)
    assert torch.allclose(m.to_pixels01(m.to_model_space(pix)), pix, atol=1e-6)


# --- native format ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["batch", "act"])
def test_native_round_trip(tmp_path, norm):
    ref = make_reference(16, 1, norm, 10, 1)
    buf = torch.rand(4, 1, 8, 8) * 2 - 1
    model = jembench.load(save_jem(ref, tmp_path / "jem.pt", buf), dataset="digits", train_sigma=0.03,
                          mean=(0.25,), std=(0.5,))
    model.info.train_config = {"lr": 0.1, "steps": 20, "objective": "jem"}
    stats = {"class_means": torch.randn(10, 64), "class_covs": torch.eye(64).expand(10, 64, 64).clone()}
    jembench.save_native(model, tmp_path / "native.pt", extras=stats, train_state={"step": 7})
    back = jembench.load(tmp_path / "native.pt")
    b, a = back.info, model.info
    assert b.source_format == "jembench" and b.jembench_version == jembench.__version__
    for field in ("family", "architecture", "depth", "width", "norm", "n_classes", "in_channels", "image_size",
                  "mean", "std", "head", "dataset", "train_sigma", "bn_momentum", "train_config", "name"):
        assert getattr(b, field) == getattr(a, field), field
    assert torch.equal(back.replay_buffer, buf)
    assert set(back.extras) == {"class_means", "class_covs"} and torch.equal(back.extras["class_means"],
                                                                             stats["class_means"])
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        assert torch.equal(back.logits(x), model.logits(x)) and torch.equal(back.log_px(x), model.log_px(x))
    assert_same(back, ref, inputs(1))  # still the authors' network on 32x32 inputs
    d = describe(back)
    assert d["replay_buffer_shape"] == [4, 1, 8, 8] and d["arch_label"] == "WRN-16-1"
    assert d["n_parameters"] == sum(p.numel() for p in ref.parameters()) - sum(
        p.numel() for p in ref.f.linear.parameters())


def test_native_checks_dataset_and_version(tmp_path, tiny_jem):
    jembench.save_native(tiny_jem, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="unknown dataset"):
        jembench.load(tmp_path / "n.pt", dataset="no-such-set")
    payload = torch.load(tmp_path / "n.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer jembench"):
        jembench.load(tmp_path / "future.pt")


def test_save_native_is_atomic_and_refuses_wrapped(tmp_path, tiny_jem, monkeypatch):
    target = tmp_path / "m.pt"
    jembench.save_native(tiny_jem, target)
    before = target.read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        jembench.save_native(tiny_jem, target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    monkeypatch.undo()
    wrapped = jembench.wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), n_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(jembench.JembenchError, match="wrapped module"):
        jembench.save_native(wrapped, tmp_path / "w.pt")


# --- wrap: any classifier --------------------------------------------------------------------------------
def test_wrap_any_classifier():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    model = jembench.wrap(net, n_classes=5, input_shape=(3, 8, 8), mean=(0.5, 0.4, 0.3), std=(0.2,), name="tiny")
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        logits, log_px = model.logits_and_log_px(x)
        assert torch.equal(logits, net(x)) and torch.equal(model(x), net(x))
        assert torch.allclose(log_px, net(x).logsumexp(1))
        y = torch.tensor([0, 4, 2])
        assert torch.allclose(model.log_pxy(x, y), net(x)[torch.arange(3), y])
    i = model.info
    assert (i.family, i.architecture, i.in_channels, i.image_size, i.std) == ("wrapped", "Sequential", 3, (8, 8),
                                                                             (0.2, 0.2, 0.2))
    assert not model.training and describe(model)["replay_buffer_shape"] is None
    with pytest.raises(ValueError, match="mean"):
        jembench.wrap(net, n_classes=5, input_shape=(3, 8, 8), mean=(0.5, 0.5))


def test_uninitialised_actnorm_initialises_like_jem(tmp_path):
    """A file saved before ActNorm saw data: both networks initialise from the same first batch."""
    torch.manual_seed(0)
    ref = CCF(10, 1, norm="act", n_classes=10, input_channels=3)
    model = jembench.load(save_jem(ref, tmp_path / "fresh.pt"))
    assert any("ActNorm" in n for n in model.info.notes)
    x = inputs(n=8)
    with torch.no_grad():
        first = model.logits(x)
        assert torch.allclose(first, ref.classify(x), atol=TOL, rtol=0)
        assert_same(model, ref.eval(), inputs(seed=2))
