"""Listing commands and importing the package stay light: ``jembench --help`` and every ``jembench COMMAND --help``
import no torch (they answered in 1.6-3.6 s when they did), and ``import jembench`` imports neither torch-fidelity,
scikit-learn's dataset module nor matplotlib. Each check runs in a fresh interpreter: this one has torch loaded."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "torch_fidelity", "torchattacks", "matplotlib", "sklearn", "scipy", "pandas")


def _loaded_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return which HEAVY packages it left loaded (and what it printed)."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
                          "sklearn": sorted(m for m in sys.modules if m.startswith("sklearn"))}}))
        """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_of_every_command_imports_no_torch():
    found = _loaded_after("""
        from click.testing import CliRunner
        from jembench.cli import main
        runner = CliRunner()
        names = main.list_commands(None)
        assert {"inspect", "datasets", "train", "clf", "calib", "ood", "robust", "gen", "run-all", "report"} <= \\
            set(names), names
        for argv in [["--help"], *([n, "--help"] for n in names)]:
            result = runner.invoke(main, argv)
            assert result.exit_code == 0 and "Usage:" in result.output, (argv, result.output)
        """)
    assert found["heavy"] == [], f"--help imported {found['heavy']}"


def test_import_jembench_and_its_api_names_stay_light():
    found = _loaded_after("""
        import jembench
        jembench.clf, jembench.gen, jembench.robust, jembench.ood, jembench.calib
        """)
    assert found["heavy"] == []


def test_loading_a_model_and_the_digits_leaves_fidelity_plots_and_sklearn_datasets_alone():
    found = _loaded_after("""
        import jembench
        model = jembench.load("checkpoints/jem-digits.pt")
        data = jembench.get_dataset("digits", "test")
        assert len(data) == 360
        """)
    assert not {"torch_fidelity", "matplotlib"} & set(found["heavy"])
    assert not [m for m in found["sklearn"] if m.startswith("sklearn.datasets")]
