"""The package's architecture, checked: subpackages import one way (docs/design/architecture.md),
no module imports another in a circle, and MLflow and Optuna stay in their layers.

Every `import` statement counts, at module level or inside a function: a circle hidden in a
function is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ids"

# What each part may import from ids (besides itself). Lower layers first.
ALLOWED = {
    "config": set(),
    "progress": set(),
    "outputs": {"config"},  # ids/outputs.py: every file a command writes for its user
    "data": {"config"},
    "evaluation": {"config", "data"},
    "model": {"config", "data", "evaluation"},
    "artifact": {"config", "data", "model"},
    "tracking": {"config", "data", "evaluation", "artifact"},
    "experiment": {"config", "progress", "data", "evaluation", "model", "artifact", "tracking"},
    "serving": {"config", "progress", "outputs", "data", "model", "artifact", "tracking"},
    "tuning": {"config", "progress", "outputs", "data", "evaluation", "model", "artifact", "tracking",
               "experiment"},
    "cli": {"config", "progress", "outputs", "tracking"},  # the shell every command shares
    # ids/run.py, ids/sweep.py, ...: `python -m ids.<command>`, each importing its own stack only
    "commands": {"config", "cli", "experiment", "serving", "tuning"},
    "tools": {"config", "progress", "outputs", "data", "evaluation", "model", "artifact", "tracking",
              "experiment", "serving", "tuning", "tools"},
}
COMMANDS = {"run", "sweep", "promote", "evaluate", "predict", "serve", "bench"}
# Specific modules a part may not import even though their package is allowed.
FORBIDDEN = {
    "artifact": {"ids.model.fit"},  # scoring never imports training
    "serving": {"ids.model.fit", "ids.experiment", "ids.tuning"},
    "tracking": {"ids.tuning"},
}
# Third-party packages that belong to one layer.
OWNED = {"mlflow": {"tracking", "artifact"}, "optuna": {"tuning", "commands", "tools"}}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _part(module: str) -> str:
    name = module.split(".")[1] if module.count(".") else ""
    if name in COMMANDS and module.count(".") == 1:
        return "tools" if name == "bench" else "commands"
    return name


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the file, module level or nested."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ids" or node.module.startswith("ids."):
                # `from ids.data import flows` imports the module ids.data.flows
                out += [(f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}")
                         else node.module, node.lineno) for a in node.names]
            else:
                out.append((node.module, node.lineno))
    return out


def _is_module(name: str) -> bool:
    p = PKG.parent / Path(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


MODULES = {_module(p): p for p in PKG.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        graph[mod] = {name for name, _ in _imports(path) if name in MODULES and name != mod}
    return graph


def test_no_module_imports_another_in_a_circle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                circles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m.count(".") >= 1))
def test_imports_point_down_the_layers(mod):
    part = _part(mod)
    assert part in ALLOWED, f"{mod}: {part!r} is not a known part of the package; add it to the map"
    bad = []
    for name, line in _imports(MODULES[mod]):
        top = name.split(".")[0]
        if top == "ids" and name != "ids":
            target = _part(name)
            if target != part and target not in ALLOWED[part]:
                bad.append(f"line {line}: {name} ({part} may import {sorted(ALLOWED[part])})")
            for prefix in FORBIDDEN.get(part, ()):
                if name == prefix or name.startswith(prefix + "."):
                    bad.append(f"line {line}: {name} is forbidden in {part}")
        elif top in OWNED and part not in OWNED[top]:
            bad.append(f"line {line}: {name} belongs to {sorted(OWNED[top])}")
    assert bad == [], f"{mod}: " + "; ".join(bad)


def test_every_subpackage_says_what_it_owns_and_may_import():
    for init in PKG.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init}: its docstring has no 'May import' line"


# What a command may not load: its start-up pays for every module it imports (5-7 s in all).
NOT_LOADED = {
    "ids.predict": ("ids.model.fit", "ids.experiment", "ids.tuning", "optuna"),
    "ids.serve": ("ids.model.fit", "ids.experiment", "ids.tuning", "optuna"),
    "ids.run": ("ids.tuning", "ids.serving", "optuna"),
    "ids.evaluate": ("ids.tuning", "ids.serving", "optuna"),
}


@pytest.mark.parametrize("command", sorted(NOT_LOADED))
def test_a_command_imports_its_own_stack_only(command):
    """Everything `python -m <command>` imports, followed through ids (module level or in a
    function), holds no training, tuning or Optuna where the command does not use them."""
    graph, seen, todo = _graph(), set(), [command]
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo += graph[mod]
    third = {name.split(".")[0] for mod in seen for name, _ in _imports(MODULES[mod])}
    loaded = sorted(m for m in seen | third for bad in NOT_LOADED[command]
                    if m == bad or m.startswith(bad + "."))
    assert loaded == [], f"{command} loads {loaded}"
