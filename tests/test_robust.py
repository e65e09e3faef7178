"""The robust evaluator: analytic answers on a linear model, eps = 0, seeds, worst case, warnings, CLI."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import jembench.evaluators.robust_run as robust_mod
from jembench.cli import main
from jembench.data.imageset import ImageSet
from jembench.evaluators.robust import metric_name, robust
from jembench.models import save_native, wrap

QUICK = dict(steps=3, eot=2, eval_purifications=2, purify_copies=2, progress=False, batch_size=8)


def linear_problem(norm, seed=0, n=40):
    """A 2-class linear model over 1x4x4 pixels in [0.3, 0.7] and each point's analytic robustness radius.

    In pixel space logits = W' p + b' with W' = 2W, b' = b - W 1 (the model takes 2p - 1). A point survives
    every attack of budget eps iff its margin (w'_y - w'_j) p + b'_y - b'_j over the dual norm of
    w'_y - w'_j exceeds eps (L1 dual for L-inf, L2 for L2); the box [0, 1] never binds for eps <= 0.25 here.
    The first 4 labels are flipped (wrong on clean inputs: radius < 0).
    """
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, 16, generator=g))
        lin.bias.zero_()
    model = wrap(nn.Sequential(nn.Flatten(), lin), n_classes=2, input_shape=(1, 4, 4), name="linear")
    images = torch.randint(77, 179, (400, 1, 4, 4), generator=g).to(torch.uint8)
    p = images.flatten(1).double() / 255
    w, b = 2 * lin.weight.detach().double(), lin.bias.detach().double() - lin.weight.detach().double().sum(1)
    logits = p @ w.T + b
    labels = logits.argmax(1)
    labels[:4] = 1 - labels[:4]
    idx = torch.arange(len(labels))
    dw = w[labels] - w[1 - labels]
    dual = dw.abs().sum(1) if norm == "linf" else dw.norm(dim=1)
    radius = (logits[idx, labels] - logits[idx, 1 - labels]) / dual
    pos = radius[radius > 0]
    eps = [0.0, float(pos.quantile(0.3)), float(pos.quantile(0.7))]
    far = torch.stack([(radius - e).abs() > 0.05 * e for e in eps[1:]]).all(0)  # no point within 5% of a budget
    keep = torch.nonzero(far).squeeze(1)[:n]
    iset = ImageSet("linear", "test", images[keep].contiguous(), labels[keep].contiguous(), 2)
    return model, iset, eps, radius[keep]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_model_matches_analytic_robust_accuracy(norm, tmp_path):
    model, iset, eps, radius = linear_problem(norm)
    assert max(eps) <= 0.25
    res = robust(model, dataset=iset, threat=norm, eps=eps, n=None, steps=40, probe=False, progress=False,
                 out_dir=tmp_path, save_raw=True)
    (ev,) = res.evaluations
    raw = np.load(tmp_path / ev.artifacts["per-image correctness (npz)"])
    labels = list(raw["row_labels"])
    for e in eps:
        expected = (radius > e).numpy()
        got = raw["correct"][labels.index(f"K=0|eps={e!r}|pgd")]
        assert (got == expected).all(), (e, np.nonzero(got != expected))
        assert ev.metrics[metric_name(norm, e, 0, "worst")] == pytest.approx(expected.mean())
    assert 0 < ev.metrics[metric_name(norm, eps[2], 0, "pgd")] < ev.metrics[metric_name(norm, eps[1], 0, "pgd")] < 1
    assert (tmp_path / ev.artifacts["accuracy vs eps"]).stat().st_size > 0
    assert not ev.warnings


def test_eps_zero_reproduces_clean_and_robust_never_exceeds_clean(tiny_jem):
    res = robust(tiny_jem, eps="0,32/255", n=10, purify_steps=(1,), seed=3, **QUICK)
    assert [ev.protocol["K"] for ev in res.evaluations] == [0, 1]  # K = 0 added next to the defended setting
    for ev in res.evaluations:
        k = ev.protocol["K"]
        clean = ev.metrics[f"clean_acc/K={k}"]
        assert clean > 0
        zero = [r for r in ev.rows if r["eps"] == 0.0]
        assert {r["attack"] for r in zero} == ({"pgd", "worst"} if k == 0 else
                                               {"bpda-eot", "transfer", "full-grad", "worst"})
        assert all(r["acc"] == clean for r in zero)
        for r in ev.rows:
            if r["attack"] != "clean":
                assert r["acc"] <= clean, r
            lo, hi = r["ci95"]
            assert lo - 1e-12 <= r["acc"] <= hi + 1e-12
        worst = [r for r in ev.rows if r["attack"] == "worst"]
        assert worst[-1]["acc"] < clean  # 32/255 breaks something even on a random net
        assert not any("eps=0" in w for w in ev.warnings)
    assert res.evaluations[1].protocol["eval_purifications"] == 2
    assert res.evaluations[0].protocol_key != res.evaluations[1].protocol_key


def test_same_seed_same_numbers(tiny_jem, tmp_path):
    """Identical per-image results whatever torch's global RNG state (torchattacks draws from it)."""
    kw = dict(eps=[0.05], n=8, purify_steps=(2,), probe=False, save_raw=True, **QUICK)
    torch.manual_seed(100)
    a = robust(tiny_jem, seed=1, out_dir=tmp_path / "a", **kw).evaluations
    torch.manual_seed(200)
    b = robust(tiny_jem, seed=1, out_dir=tmp_path / "b", **kw).evaluations
    assert [e.metrics for e in a] == [e.metrics for e in b]
    assert [e.rows for e in a] == [e.rows for e in b]  # seeds and passes per image included
    raw = [np.load(tmp_path / d / a[0].artifacts["per-image correctness (npz)"]) for d in ("a", "b")]
    assert (raw[0]["correct"] == raw[1]["correct"]).all()
    assert all(len(r["seeds"]) == 1 for e in a for r in e.rows if r["attack"] in ("pgd", "bpda-eot", "full-grad"))


def test_passes_per_image_count_attack_and_evaluation(tiny_jem):
    """Known answer, per image: BPDA-EOT PGD spends steps * eot * copies * (K + 1) forwards and as many backwards;
    deciding a break spends R * copies * (K + 1) forwards and R * copies * K backwards (the SGLD gradients)."""
    s, e, c, r, k = 3, 2, 2, 3, 1
    (_, ev) = robust(tiny_jem, eps=[0.05], n=4, purify_steps=(k,), steps=s, eot=e, eval_purifications=r,
                     purify_copies=c, full_grad_max_k=0, probe=False, progress=False, batch_size=8).evaluations
    rows = {row["attack"]: row for row in ev.rows}
    assert rows["bpda-eot"]["eval_fwd_per_image"] == r * c * (k + 1)
    assert rows["bpda-eot"]["eval_bwd_per_image"] == r * c * k
    assert rows["bpda-eot"]["fwd_per_image"] == s * e * c * (k + 1) + r * c * (k + 1)
    assert rows["bpda-eot"]["bwd_per_image"] == s * e * c * (k + 1) + r * c * k
    # one K = 0 source (one attack, one restart), re-made (s passes of the undefended model), then judged
    assert rows["transfer"]["fwd_per_image"] == s + r * c * (k + 1)
    assert rows["transfer"]["bwd_per_image"] == s + r * c * k
    assert rows["worst"]["fwd_per_image"] == rows["bpda-eot"]["fwd_per_image"] + rows["transfer"]["fwd_per_image"]


def test_attack_that_repairs_misclassified_points_does_not_raise_robust_accuracy(monkeypatch):
    """Robust = correct on the clean input AND after the attack: a perturbation that makes a clean mistake
    correct does not count, so no row exceeds clean accuracy."""
    model, iset = lit_problem()
    wrong = iset.labels.clone()
    wrong[::2] = (wrong[::2] + 1) % 10  # half the labels disagree with the lit pixel: clean accuracy 1/2
    iset = ImageSet("lit", "test", iset.images, wrong, 10)
    lit = torch.zeros_like(iset.images)
    lit.view(len(wrong), -1)[torch.arange(len(wrong)), wrong] = 255

    def repair(attack, images, labels, seed, start=0):  # lights the labelled pixel: every prediction becomes correct
        return lit.float() / 255

    monkeypatch.setattr(robust_mod, "run_attack", repair)
    (ev,) = robust(model, dataset=iset, eps=[0.0, 0.1], n=None, probe=False, progress=False).evaluations
    assert {(r["eps"], r["attack"]): r["acc"] for r in ev.rows} == {
        (None, "clean"): 0.5, (0.0, "pgd"): 0.5, (0.0, "worst"): 0.5, (0.1, "pgd"): 0.5, (0.1, "worst"): 0.5}
    assert any("eps=0" in w and "4 images changed" in w for w in ev.warnings)  # checked before the AND


def lit_problem():
    """A 10-class linear model reading pixel j as class j, and 8 images with the label's pixel lit."""
    model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), n_classes=10, input_shape=(1, 8, 8), name="lin")
    with torch.no_grad():
        model.net[1].weight.copy_(torch.eye(10, 64))
        model.net[1].bias.zero_()
    images = torch.zeros(8, 1, 8, 8, dtype=torch.uint8)
    labels = torch.arange(8) % 10
    images.view(8, -1)[torch.arange(8), labels] = 255  # pixel y lit: the clean prediction is y; inverted it is not
    return model, ImageSet("lit", "test", images, labels, 10)


def test_worst_case_is_per_image(tiny_jem, monkeypatch):
    """Two attacks that each break a different half: each row reports 1/2, the worst case 0."""
    def fake(attack, images, labels, seed, start=0):
        half = torch.arange(len(images)) % 2 == (0 if type(attack).__name__ == "KeyedPGD" else 1)
        return torch.where(half.view(-1, 1, 1, 1), 1 - images, images)

    monkeypatch.setattr(robust_mod, "run_attack", fake)
    model, iset = lit_problem()
    res = robust(model, dataset=iset, eps=[0.1], n=None, attacks=("pgd", "apgd-ce"), probe=False, progress=False)
    rows = {r["attack"]: r["acc"] for r in res.evaluations[0].rows}
    assert rows == {"clean": 1.0, "pgd": 0.5, "apgd-ce": 0.5, "worst": 0.0}


def test_sanity_warnings_fire(monkeypatch, tmp_path):
    model, iset, eps, _ = linear_problem("linf")
    monkeypatch.setattr(robust_mod, "run_attack", lambda attack, images, labels, seed, start=0: 1 - images)
    (ev,) = robust(model, dataset=iset, eps=[0.0], n=None, steps=2, progress=False, out_dir=tmp_path).evaluations
    assert any("eps=0" in w for w in ev.warnings)
    assert json.loads((tmp_path / "results.json").read_text())["evaluations"][0]["warnings"] == ev.warnings
    monkeypatch.setattr(robust_mod, "run_attack", lambda attack, images, labels, seed, start=0: images)  # no-op
    (ev,) = robust(model, dataset=iset, eps=[0.0], n=None, steps=2, progress=False).evaluations
    assert any("large-eps probe" in w for w in ev.warnings)
    assert ev.protocol["probe"]["eps"] == 0.5
    rows = [{"attack": "bpda-eot", "gradient": "bpda", "acc": 0.6, "correct": 6},
            {"attack": "transfer", "gradient": "transfer", "acc": 0.4, "correct": 4}]
    run = robust_mod.ModelRun.__new__(robust_mod.ModelRun)
    clean = torch.ones(10, dtype=torch.bool)
    assert any("transfer attack" in w for w in run._check(1, 0.03, {"correct": 8, "acc": 0.8}, rows, clean))
    rows[1]["acc"] = 0.7
    assert not run._check(1, 0.03, {"correct": 8, "acc": 0.8}, rows, clean)


def test_bad_input_is_one_line_error(tiny_jem):
    from jembench.errors import JembenchError

    for kw in (dict(eps=[8.0]), dict(eps=[0.1], attacks=("fgsm",)), dict(eps=[0.1], purify_steps=(-1,)),
               dict(eps=[0.1], norm="l1"), dict(eps=[0.1], eot=0)):
        with pytest.raises(JembenchError):
            robust(tiny_jem, n=2, progress=False, **kw)


def test_cli(tiny_jem, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    save_native(tiny_jem, ckpt)
    out = tmp_path / "out"
    args = ["robust", str(ckpt), "--n", "6", "--eps", "0,8/255", "--purify-steps", "0,1", "--steps", "2", "--eot", "1",
            "--eval-purifications", "1", "--purify-copies", "1", "--no-probe", "--out-dir", str(out), "--json",
            "--save-raw", "--device", "cpu"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [e["protocol"]["K"] for e in doc["evaluations"]] == [0, 1]
    assert "robust_acc/linf/0.0314/K=1/bpda-eot" in doc["evaluations"][1]["metrics"]
    written = json.loads((out / "results.json").read_text())
    assert written["evaluations"][0]["metrics"] == doc["evaluations"][0]["metrics"]
    for rel in doc["evaluations"][1]["artifacts"].values():
        assert (out / rel).exists()
    for arg, text in (("--eps=8", "--eps"), ("--norm=l3", "--norm"), ("--attacks=fgsm", "unknown attack")):
        bad = CliRunner().invoke(main, ["robust", str(ckpt), arg, "--out-dir", str(out)])
        assert bad.exit_code == 2 and bad.output.startswith(f"jembench: error: {text}"), bad.output
        assert bad.output.count("\n") == 1, bad.output


def test_adversarials_and_purifications_do_not_depend_on_the_batch_size(tiny_jem):
    """Random starts, EOT and purification noise are keyed by sample index: batch sizes 7 and 64 give the same
    adversarial examples (L-inf and L2, stochastic purifier with EOT) and the same purified logits."""
    from jembench.attacks import PixelClassifier, PurifyConfig
    from jembench.data import get_dataset
    from jembench.evaluators.robust import RobustSettings
    from jembench.forward import ForwardCache

    iset = get_dataset("digits", "test").first(14)
    s = RobustSettings.build(dict(steps=2, eot=2, purify_copies=2, eval_purifications=2, probe=False))
    for norm, eps in (("linf", 16 / 255), ("l2", 0.5)):
        advs = []
        for bs in (7, 64):
            run = robust_mod.ModelRun(tiny_jem, iset, robust_mod.RobustConfig.for_norm(s, norm, 3, bs),
                                      ForwardCache(), progress=False)
            advs.append([torch.cat([a for _, a in run.adversarials(run.attacker("pgd", k, eps, "bpda", None), 11,
                                                                    run.x8, run.y)]) for k in (0, 1)])
        for a, b in zip(*advs):
            assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(advs[0][0], advs[0][1])  # K = 1 is another attack (a check that can fail)
    x = iset.pixels01()
    whole, parts = PixelClassifier(tiny_jem, PurifyConfig(steps=2)), PixelClassifier(
        tiny_jem, PurifyConfig(steps=2))
    whole.key(5, 0, 14)
    split = []
    for lo in (0, 7):
        parts.key(5, lo, 7)
        split.append(parts(x[lo:lo + 7]))
    assert torch.allclose(whole(x), torch.cat(split), atol=1e-5)



def test_transfer_rows_judge_the_very_k0_adversarials_and_the_set_is_never_a_float_copy(tiny_jem, monkeypatch):
    """Transfer at K=1 re-makes the K=0 adversarial examples batch by batch from their seeds: every image it
    judges equals the one the K=0 row judged (bit for bit, all eps, attacks and restarts); no float copy of the
    evaluation set is made (only batches: the set stays its uint8 tensor)."""
    judged = {}
    judge = robust_mod.ModelRun.judge

    def spy(self, x01, y, start, k):
        assert len(x01) <= 8
        judged.setdefault((self._row_tag, k), []).append((start, x01.detach().clone()))
        return judge(self, x01, y, start, k)

    def tagged(method, tag):
        def run(self, *args, **kw):
            self._row_tag = tag(args)
            return method(self, *args, **kw)
        return run

    monkeypatch.setattr(robust_mod.ModelRun, "judge", spy)
    monkeypatch.setattr(robust_mod.ModelRun, "attack", tagged(robust_mod.ModelRun.attack, lambda a: (a[0], a[2])))
    monkeypatch.setattr(robust_mod.ModelRun, "transfer", tagged(robust_mod.ModelRun.transfer, lambda a: a[1]))
    monkeypatch.setattr(robust_mod.ModelRun, "predict", tagged(robust_mod.ModelRun.predict, lambda a: "clean"))
    pixels01 = ImageSet.pixels01

    def batch_only(self, start=0, stop=None):
        assert stop is not None and stop - start <= 8, "a float copy of the whole set"
        return pixels01(self, start, stop)

    monkeypatch.setattr(ImageSet, "pixels01", batch_only)
    evs = robust(tiny_jem, dataset="digits", n=20, eps="2/255,8/255", attacks="pgd,apgd-ce", restarts=2,
                 purify_steps=(1,), full_grad_max_k=0, probe=False, **{**QUICK, "steps": 2}).evaluations
    assert [r["attack"] for r in evs[1].rows][:5] == ["clean", "bpda-eot", "apgd-ce-bpda-eot", "transfer", "worst"]
    for eps in (2 / 255, 8 / 255):
        made = [x for name in ("pgd", "apgd-ce") for x in judged[(name, eps), 0]]  # K = 0 rows, in order
        again = judged[eps, 1]  # the transfer row at K = 1
        assert len(made) == len(again) == 2 * 2 * 3  # attacks x restarts x batches of 8 (20 images)
        assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(made, again))
    assert not torch.equal(judged[(("pgd", 2 / 255), 0)][0][1], judged[(("pgd", 8 / 255), 0)][0][1])
