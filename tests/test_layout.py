"""The house rules, checked on the source: layers point one way, click lives under jembench/cli, no module over
400 lines and no function over 80 (docs/architecture.md draws the layers)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jembench"
# layer of each module (a prefix names a package): a module may import only from its own layer or lower ones
LAYERS = {
    "jembench": 5, "jembench.cli": 5, "jembench.__main__": 5,
    "jembench.evaluators": 4, "jembench.presets": 4,
    "jembench.forward": 3, "jembench.scores": 3, "jembench.attacks": 3, "jembench.generation": 3,
    "jembench.metrics": 3, "jembench.figures": 3, "jembench.reporting": 3, "jembench.reported": 3,
    "jembench.feature_extractors": 3, "jembench.preflight": 3, "jembench.batch_size": 3, "jembench.training": 3,
    "jembench.training_setup": 3, "jembench.chain_runs": 3,
    "jembench.models": 2, "jembench.data": 2, "jembench.sampling": 2, "jembench.results": 2, "jembench.cost": 2,
    "jembench.io": 1, "jembench.errors": 1, "jembench.runtime": 1, "jembench.defaults": 1, "jembench.version": 1,
    "jembench.settings": 1, "jembench.outdir": 1, "jembench.rng": 1, "jembench.lazy": 1, "jembench.bundled": 1,
    "jembench.progress": 1, "jembench.distributed": 1, "jembench.background": 1,
}
NAMES = {1: "io, errors, runtime, settings", 2: "models, data, sampling, results",
         3: "forward, scores, attacks, generation, metrics, figures, reporting, training",
         4: "evaluators, run-all, presets", 5: "cli and the package root"}


def layer(module: str) -> int:
    """The layer of ``module``; a module that no entry places fails the test (add it to LAYERS)."""
    found = [k for k in LAYERS if module == k or (k != "jembench" and module.startswith(k + "."))]
    assert found, f"{module} is in no layer: add it to LAYERS in tests/test_layout.py and docs/architecture.md"
    return LAYERS[max(found, key=len)]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts), ast.parse(path.read_text())


def imports(module: str, is_package: bool, tree: ast.AST):
    """(imported module, line) of every jembench or click import, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                targets = [node.module]
            yield from ((t, node.lineno) for t in targets)


def test_layers_point_one_way_and_click_only_under_cli():
    problems = []
    for path, module, tree in modules():
        for target, line in imports(module, path.name == "__init__.py", tree):
            if target.split(".")[0] == "click" and not module.startswith("jembench.cli"):
                problems.append(f"{path.name}:{line} imports click outside jembench/cli")
            if target.startswith("jembench") and layer(target) > layer(module) and target != "jembench.version":
                problems.append(f"{module}:{line} ({NAMES[layer(module)]}) imports {target} from above "
                                f"({NAMES[layer(target)]})")
    assert not problems, "\n".join(problems)


def test_no_module_over_400_lines_no_function_over_80():
    problems = []
    for path, module, tree in modules():
        n = len(path.read_text().splitlines())
        if n > 400:
            problems.append(f"{module}: {n} lines")
        problems += [f"{module}.{f.name}: {f.end_lineno - f.lineno + 1} lines" for f in ast.walk(tree)
                     if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 80]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, target, allowed", [("jembench.models.checkpoints", "jembench.evaluators.clf", False),
                                                     ("jembench.cli.options", "jembench.settings", True)])
def test_the_layer_check_itself(module, target, allowed):
    assert (layer(target) <= layer(module)) is allowed
