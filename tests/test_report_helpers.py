"""Synthetic results folders for the report tests (no model, no evaluator: Evaluations built by hand; no tests here)."""

from pathlib import Path

from jembench.figures import close, new_figure
from jembench.results import Evaluation, provenance, write_results
from jembench.io import atomic_write_bytes, figure_png


def checkpoint(name: str, dataset: str, sha: str) -> dict:
    return {"name": name, "sha256": sha, "path": f"/ckpts/{name}.pt", "family": "jembench", "architecture": "wrn",
            "depth": 10, "width": 1, "norm": "none", "dataset": dataset, "n_classes": 10, "head": "ccf"}


def figure(path: Path, slope: float) -> None:
    fig, ax = new_figure(3, 2.4)
    ax.plot([0, 1], [0, slope])
    ax.set_title(path.stem)
    atomic_write_bytes(path, figure_png(fig))
    close(fig)


def write_run(folder: Path, *, name: str, dataset: str = "digits", accuracy: float = 0.9, sigma: float = 0.0,
              fail: str = "") -> Path:
    """A results.json with clf, calib (with a figure and a warning), ood (figure) and optionally a failed step."""
    folder.mkdir(parents=True, exist_ok=True)
    ck = checkpoint(name, dataset, sha=(name.encode().hex() * 64)[:64])
    base = {"dataset": dataset, "split": "test", "n": 100, "test_sigma": sigma}
    figure(folder / "reliability.png", accuracy)
    figure(folder / "roc.png", 1 - accuracy)
    evs = [
        Evaluation("clf", ck, dict(base), {"accuracy": accuracy, "nll": 0.4},
                   {"accuracy": [accuracy - 0.05, accuracy + 0.03]}, rows=[{"class": 0, "accuracy": accuracy}],
                   wall_time_s=1.5),
        Evaluation("calib", ck, {**base, "bins": 15}, {"ece": 0.05, "mce": 0.2},
                   warnings=[f"<b>few samples</b> for {name}"], artifacts={"reliability diagram": "reliability.png"},
                   wall_time_s=0.5),
        Evaluation("ood", ck, {"in_dataset": dataset, "n_in": 100, "test_sigma": sigma},
                   {"auroc/logp/noise": 0.7, "auroc/msp/noise": 0.8}, artifacts={"roc": "roc.png"}, wall_time_s=2.0),
    ]
    if fail:
        evs.append(Evaluation(fail, ck, {"settings": 1}, status="failed", error="RuntimeError: <i>boom</i>"))
    write_results(folder, evs, provenance(device="cpu", seed=0, config={"name": name}))
    return folder / "results.json"
