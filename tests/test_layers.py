"""The import layers of `helpers/`: every import points to a strictly lower layer (no circles)."""
import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "helpers"

LAYERS = [
    ["settings"],
    ["data", "likelihoods", "priors", "nets"],
    ["models"],
    ["training", "checkpoints"],
    ["verification", "metrics", "inference", "latent", "divergences", "plotting"],
    ["recipes", "widgets", "report"],
    ["__main__"],
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def imported_helpers(path: Path) -> set[str]:
    """Names of helpers modules that `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:                  # from .models import X
                found.add(node.module.split(".")[0])
            elif node.level == 1:                                # from . import settings, data
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "helpers":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "helpers" and len(parts) > 1:
                    found.add(parts[1])
    return found - {"__init__"}


def test_every_module_has_a_layer():
    modules = {p.stem for p in HELPERS.glob("*.py")} - {"__init__"}
    assert modules <= set(LEVEL), f"modules without a layer: {sorted(modules - set(LEVEL))}"


def test_imports_point_down_only():
    bad = []
    for path in sorted(HELPERS.glob("*.py")):
        if path.stem == "__init__":
            continue
        for target in imported_helpers(path):
            if LEVEL[target] >= LEVEL[path.stem]:
                bad.append(f"{path.stem} (layer {LEVEL[path.stem]}) imports {target} (layer {LEVEL[target]})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from .recipes import train\n    from . import settings\nimport helpers.models\n")
    assert imported_helpers(f) == {"recipes", "settings", "models"}
