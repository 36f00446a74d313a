"""The package's layers point one way (models <- metrics <- dynamics <- runs <- experiments <- cli), nothing imports
in a circle, and experiments use only the public API. Read from the source (every import statement, also those
inside functions), not from what happens to be imported at run time."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "lazyhasty"

# lower ranks may be imported by higher ones, never the other way; modules of one package import each other freely
# (theory sits above models: the infinite-width NTK follows the MLP's activation conventions)
RANK = {"_lazy": 0, "errors": 0, "files": 0.5, "data": 1, "models": 2, "theory": 2.5, "metrics": 3, "claims": 3.5,
        "dynamics": 4, "config": 5, "plotting": 5.5, "runs": 6, "compare": 6.2, "lazyhasty": 6.5, "report": 7,
        "experiments": 8, "cli": 9}
PUBLIC = {"lazyhasty", "lazyhasty.data", "lazyhasty.plotting", "lazyhasty.theory", "lazyhasty.claims",
          "lazyhasty.metrics", "lazyhasty.runs"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    p = SRC.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def bound_names(package: str) -> set[str]:
    """Names a package's ``__init__`` binds (what ``from package import name`` finds before any submodule)."""
    init = SRC.joinpath(*package.split(".")) / "__init__.py"
    if not init.is_file():
        return set()
    names = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def imports(path: Path) -> set[str]:
    """Every lazyhasty module that ``path`` imports, anywhere in the file."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lazyhasty"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lazyhasty":
                continue
            bound = bound_names(target) if target != mod else set()  # a package's own `from . import sub`
            for a in node.names:  # `from X import name`: X's attribute if X binds it, else the module X.name
                sub = f"{target}.{a.name}"
                out.add(sub if a.name not in bound and is_module(sub) else target)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in ROOT.rglob("*.py")}


def layer(mod: str) -> str:
    parts = mod.split(".")
    return "lazyhasty" if len(parts) == 1 else parts[1]


def test_every_import_resolves_to_a_module():
    for mod, targets in graph().items():
        for t in targets:
            assert is_module(t), f"{mod} imports {t}, which is not a module of the package"


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_layers_point_one_way():
    bad = []
    for mod, targets in graph().items():
        for t in targets:
            a, b = layer(mod), layer(t)
            if a != b and not RANK[b] < RANK[a]:
                bad.append(f"{mod} ({a}) imports {t} ({b})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_experiments_use_the_public_api():
    bad = []
    for mod, targets in graph().items():
        if layer(mod) != "experiments":
            continue
        for t in targets:
            if t not in PUBLIC and layer(t) != "experiments":
                bad.append(f"{mod} imports {t}")
    assert not bad, "experiments must use `from lazyhasty import ...` (or its namespaces):\n" \
        + "\n".join(bad)


def test_public_names_exist_and_the_checker_sees_imports():
    import lazyhasty

    missing = [n for n in lazyhasty.__all__ if not hasattr(lazyhasty, n)]
    assert not missing
    g = graph()  # the checker itself: it must see relative, absolute and function-level imports
    assert "lazyhasty.models.ensemble" in g["lazyhasty.dynamics.train"]
    assert "lazyhasty" in g["lazyhasty.experiments.fig1"]
    assert "lazyhasty.experiments" in g["lazyhasty.cli"]  # imported inside functions
