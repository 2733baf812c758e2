"""The import layers of `helpers/`: every import points to a strictly lower layer (no circles)."""
import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "helpers"

LAYERS = [
    ["settings"],
    ["data", "likelihoods", "priors", "nets", "frechet"],
    ["models", "svhn_data", "png"],
    ["training", "checkpoints"],
    ["verification", "metrics", "inference", "latent", "divergences", "plotting"],
    ["recipes", "widgets", "report"],
    ["__main__"],
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


# inside the recipes package: each module imports only the ones before it
RECIPE_MODULES = ["registry", "classifiers", "autoencoders", "likelihood_vaes", "latent_models", "gans", "fid", "svhn", "comparison"]
PACKAGES = {"recipes": HELPERS / "recipes"}


def imported_helpers(path: Path, package: str | None = None) -> set[str]:
    """Names of helpers modules that `path` imports, at module level or inside functions. For a
    module inside a package of helpers (`package`), `..x` is the helpers module x and `.x` the
    package's own module, returned as "package.x"."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            top = 2 if package else 1                            # the level that reaches helpers/
            if package and node.level == 1:                      # from .registry import X / from . import gans
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                found.update(f"{package}.{n}" for n in names)
            elif node.level == top and node.module:              # from .models import X
                found.add(node.module.split(".")[0])
            elif node.level == top:                              # from . import settings, data
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
    modules = {p.stem for p in HELPERS.glob("*.py")} - {"__init__"} | set(PACKAGES)
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


def test_the_recipes_package_imports_down_only():
    """Each recipes module imports helpers modules of lower layers than recipes, and recipes
    modules listed before it (no circles inside the package); every module is listed."""
    package = PACKAGES["recipes"]
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert modules == set(RECIPE_MODULES), f"unlisted or missing recipes modules: {modules ^ set(RECIPE_MODULES)}"
    bad = []
    for name in RECIPE_MODULES:
        for target in imported_helpers(package / f"{name}.py", package="recipes"):
            if target.startswith("recipes."):
                inner = target.split(".", 1)[1]
                if RECIPE_MODULES.index(inner) >= RECIPE_MODULES.index(name):
                    bad.append(f"recipes.{name} imports {target}")
            elif LEVEL[target] >= LEVEL["recipes"]:
                bad.append(f"recipes.{name} imports {target} (layer {LEVEL[target]})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_no_recipes_module_is_much_over_400_lines():
    too_long = {str(p.relative_to(HELPERS)): n for p in sorted(PACKAGES["recipes"].glob("*.py"))
                if (n := len(p.read_text().splitlines())) > 450}
    assert not too_long, f"modules over 450 lines: {too_long}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from .recipes import train\n    from . import settings\nimport helpers.models\n")
    assert imported_helpers(f) == {"recipes", "settings", "models"}
