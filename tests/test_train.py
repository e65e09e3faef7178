"""jembench train on a small slice of digits: learning, divergence guard, exact resume, semi-supervised labels."""

import json

import pytest
import torch
from click.testing import CliRunner

import jembench
from jembench.cli import main
from jembench.data import get_dataset
from jembench.data.registry import REGISTRY, DatasetSpec, register
from jembench.errors import JembenchError
from jembench.models.checkpoints import file_sha256
from jembench.runtime import generator
from jembench.training import TrainingDiverged, select_labelled

SMALL = "digits-small-train-test"
FAST = dict(depth=10, width=1, batch_size=50, sgld_steps=5, buffer_size=200, lr=3e-3)


@pytest.fixture(scope="module", autouse=True)
def small_digits():
    """digits cut to 400 train / 120 test images, registered under a test-only name."""
    def loader(split, root, download):
        full = get_dataset("digits", split)
        small = full.first(400 if split == "train" else 120)
        small.name = SMALL
        return small

    register(DatasetSpec(SMALL, 10, (1, 8, 8), ("train", "test"), "test slice of digits", loader, needs_root=False))
    yield
    REGISTRY.pop(SMALL, None)


def test_short_run_learns_classes_and_density(tmp_path):
    r = jembench.train(SMALL, out=tmp_path / "jem.pt", epochs=3, progress=False, **FAST)
    h0, h = r.history[0], r.history[-1]
    assert h0["epoch"] == 0 and h["epoch"] == 3 == r.epochs_done
    assert h["test_acc"] > h0["test_acc"] + 0.3
    assert h["logp_gap"] > h0["logp_gap"] + 1.0  # log p(test) - log p(uniform noise) grows
    model = jembench.load(r.path)
    assert model.info.dataset == SMALL and model.info.train_sigma == 0.03 and model.info.family == "jembench"
    cfg = model.info.train_config
    assert cfg["objective"] == "jem" and cfg["sgld_steps"] == 5 and cfg["seed"] == 0 and cfg["epochs_done"] == 3
    assert cfg["sampler_config"]["sampler"] == "sgld" and cfg["test_accuracy"] == h["test_acc"]
    assert model.replay_buffer.shape == (200, 1, 8, 8)


def test_baseline_has_no_buffer_and_jempp_stores_gaussians(tmp_path):
    base = jembench.train(SMALL, out=tmp_path / "base.pt", epochs=1, px_weight=0.0, progress=False, **FAST)
    model = jembench.load(base.path)
    assert model.replay_buffer is None and model.info.train_config["objective"] == "classifier"
    pp = jembench.train(SMALL, out=tmp_path / "pp.pt", epochs=1, sampler="jem++", init="gaussian", norm="batch",
                        jempp_outer=2, jempp_inner=2, progress=False, **{**FAST, "lr": 1e-3})
    model = jembench.load(pp.path)
    assert model.info.norm == "batch" and model.info.train_config["objective"] == "jem++"
    assert model.extras["class_means"].shape == (10, 64) and model.extras["class_covs"].shape == (10, 64, 64)
    assert model.replay_buffer.min() >= -1 and model.replay_buffer.max() <= 1  # JEM++ clamps its chains


def test_resume_continues_exactly(tmp_path):
    straight = jembench.train(SMALL, out=tmp_path / "a.pt", epochs=2, progress=False, **FAST)
    jembench.train(SMALL, out=tmp_path / "b.pt", epochs=1, progress=False, **FAST)
    resumed = jembench.train(resume=tmp_path / "b.pt", epochs=2, progress=False)
    assert resumed.path == str(tmp_path / "b.pt") and resumed.config["sgld_steps"] == 5  # config from the file
    a, b = torch.load(straight.path, weights_only=True), torch.load(resumed.path, weights_only=True)
    for k, v in a["model_state_dict"].items():
        assert torch.equal(v, b["model_state_dict"][k]), k
    assert torch.equal(a["replay_buffer"], b["replay_buffer"])
    assert [h["test_acc"] for h in straight.history] == [h["test_acc"] for h in resumed.history]
    with pytest.raises(JembenchError, match="already trained for 2 epochs"):
        jembench.train(resume=tmp_path / "b.pt", progress=False)
    with pytest.raises(JembenchError, match="width is 1 in the checkpoint"):
        jembench.train(resume=tmp_path / "b.pt", epochs=3, width=2, progress=False)


def test_divergence_guard_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "jem.pt"
    jembench.train(SMALL, out=out, epochs=1, progress=False, **FAST)
    sha = file_sha256(out)
    with pytest.raises(TrainingDiverged) as info:
        jembench.train(resume=out, epochs=2, lr=50.0, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "diverged at epoch 2" in msg and "last good checkpoint (epoch 1)" in msg
    assert file_sha256(out) == sha  # untouched
    # from scratch: nothing good to keep, said so
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        jembench.train(SMALL, out=tmp_path / "new.pt", epochs=1, progress=False, **{**FAST, "lr": 50.0})
    assert not (tmp_path / "new.pt").exists()


def test_semi_supervised_selects_n_per_class(tmp_path):
    labels = get_dataset("digits", "train").labels
    idx = select_labelled(labels, 7, 10, generator(0))
    assert len(idx) == 70 and len(idx.unique()) == 70
    assert torch.bincount(labels[idx], minlength=10).tolist() == [7] * 10
    assert torch.equal(idx, select_labelled(labels, 7, 10, generator(0)))
    with pytest.raises(JembenchError, match="has only"):
        select_labelled(labels, 1000, 10, generator(0))
    r = jembench.train(SMALL, out=tmp_path / "semi.pt", epochs=1, labels_per_class=3, progress=False, **FAST)
    assert r.config["labels_per_class"] == 3


def test_cli_train_json_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "cli.pt"
    args = ["train", "--dataset", SMALL, "--out", str(out), "--epochs", "1", "--sgld-steps", "2", "--buffer-size",
            "100", "--batch-size", "100", "--decay-epochs", "0", "--quiet", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["epochs_done"] == 1 and doc["config"]["sgld_steps"] == 2 and doc["path"] == str(out)
    assert doc["config"]["decay_epochs"] == [0]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "exists; pass --resume" in res.output and "Traceback" not in res.output


def test_learning_rate_schedule_is_stateless():
    from jembench.training import learning_rate

    cfg = {"lr": 1.0, "decay_epochs": [2, 4], "decay_rate": 0.5, "warmup_steps": 4}
    assert [learning_rate(cfg, e, 100) for e in (1, 2, 3, 4, 5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert learning_rate(cfg, 1, 0) == 0.25 and learning_rate(cfg, 1, 3) == 1.0  # linear warm-up
    assert learning_rate({**cfg, "decay_epochs": None, "warmup_steps": 0}, 9, 0) == 1.0


def test_refuses_a_dataset_without_separate_test_split(tmp_path):
    import numpy as np

    np.savez(tmp_path / "one.npz", x=np.zeros((20, 1, 8, 8), np.uint8), y=np.arange(20) % 10)
    with pytest.raises(JembenchError, match="no separate train and test splits .* x_train, y_train, x_test, y_test"):
        jembench.train(f"npz:{tmp_path / 'one.npz'}", out=tmp_path / "m.pt", progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_out_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(JembenchError, match=r"--out .*f is a file, not a folder"):
        jembench.train(SMALL, out=tmp_path / "f" / "m.pt", progress=False, **FAST)


def test_help_teaches():
    out = CliRunner().invoke(main, ["train", "--help"]).output
    for text in ("Examples:", "--decay-epochs 8,10 --epochs 12 --out jem.pt", "--px-weight 0", "--sampler jem++",
                 "--init gaussian", "--labels-per-class", "--resume run.pt", "last good checkpoint",
                 "Same command, same weights", "checkpoints/README.md", "[default: 20]", "(JEM: 0.03)"):
        assert text in out, text


def test_resume_needs_a_jembench_training_checkpoint(tmp_path, tiny_jem):
    jembench.save_native(tiny_jem, tmp_path / "native.pt")  # native, but no train_state
    torch.save({"model_state_dict": tiny_jem.net.state_dict()}, tmp_path / "jem.pt")  # the authors' format
    for name in ("native.pt", "jem.pt"):
        with pytest.raises(JembenchError, match="not a jembench training checkpoint .no train_state"):
            jembench.train(resume=tmp_path / name, epochs=2, progress=False)


def test_cd_k_starts_chains_from_the_batch_and_raises_the_density_gap(tmp_path, monkeypatch):
    import jembench.training as training

    starts = []
    real = training.run_sampler

    def recording(model, x0, *args, **kw):
        starts.append(x0.clone())
        return real(model, x0, *args, **kw)

    monkeypatch.setattr(training, "run_sampler", recording)
    r = jembench.train(SMALL, out=tmp_path / "cd.pt", epochs=1, sampler_init="data", progress=False, **FAST)
    h0, h = r.history[0], r.history[-1]
    assert h["logp_gap"] > h0["logp_gap"] + 0.1  # log p~(test) - log p~(uniform noise) grows (0.0005 -> 0.145)
    model = jembench.load(r.path)
    cfg = model.info.train_config
    assert cfg["sampler_init"] == "data" and cfg["chains"].startswith("CD-k") and model.replay_buffer is None
    # every chain starts at a training image (plus the train_sigma = 0.03 input noise), not at noise or a buffer
    train = model.to_model_space(get_dataset(SMALL, "train").images.float() / 255).flatten(1)
    x0 = torch.cat(starts).flatten(1)
    nearest = torch.cdist(x0, train).min(1).values
    assert len(starts) == 8 and nearest.max() < 0.03 * 8 * 3  # 64 pixels: ||noise|| ~ 0.03 * 8
    pcd = jembench.train(SMALL, out=tmp_path / "pcd.pt", epochs=1, progress=False, **FAST)
    assert jembench.load(pcd.path).info.train_config["chains"].startswith("PCD")
    with pytest.raises(JembenchError, match="--sampler-init"):
        jembench.train(SMALL, out=tmp_path / "x.pt", sampler_init="noise", progress=False, **FAST)
