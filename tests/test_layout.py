"""The house rules of the source tree, checked on the code itself (docs/ARCHITECTURE.md).

- No import circle between igkit's modules (imports at module level; lazy imports inside
  functions are how layers reach up on purpose, e.g. ``Result._repr_html_`` drawing a figure).
- Deep-learning frameworks are imported only by the backends and the code that builds or loads
  models.
- The command line is wiring: no module of ``igkit.cli`` imports a framework or matplotlib, and
  the package stays small.
- A module over 500 lines says why at its top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "igkit"
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "flax", "jaxlib")
#: Packages allowed to import a framework: the backends, and what builds or loads models.
FRAMEWORK_HOMES = ("backends", "models", "microscopy")
LONG = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Names of the modules ``path`` imports (module level only, or everywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    nodes = ast.walk(tree) if not top_level_only else _top_level(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, path.name == "__init__.py")
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements run at import: the module body, without ``if TYPE_CHECKING:`` blocks."""
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        body.append(node)
        if isinstance(node, (ast.If, ast.Try)):
            body.extend(ast.walk(node))  # type: ignore[arg-type]
    return body


def test_no_import_circle() -> None:
    modules = _modules()
    graph = {
        name: {
            target
            for target in _imports(name, path, top_level_only=True)
            if target in modules and target != name
        }
        for name, path in modules.items()
    }
    # A package's __init__ importing its own submodules is how it re-exports them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_frameworks_are_imported_only_by_backends_and_model_code() -> None:
    offenders = []
    for name, path in _modules().items():
        package = name.split(".")[1] if name.count(".") >= 1 else ""
        if package in FRAMEWORK_HOMES:
            continue
        used = {
            i.split(".")[0] for i in _imports(name, path, top_level_only=False)
        } & set(FRAMEWORKS)
        if used:
            offenders.append(f"{name}: {', '.join(sorted(used))}")
    assert not offenders, "framework code outside backends/ and models/: " + "; ".join(offenders)


def test_cli_is_wiring() -> None:
    cli = [p for name, p in _modules().items() if name.startswith("igkit.cli")]
    for path in cli:
        used = {i.split(".")[0] for i in _imports("igkit.cli.x", path, top_level_only=False)}
        assert not used & {*FRAMEWORKS, "matplotlib"}, path
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in cli)
    # Before the workflow redesign the command line held 2,618 lines of the workflow.
    # Seven commands of argparse wiring and printing, about 200 lines each.
    assert lines < 1500, f"igkit.cli has {lines} lines; move work into the library"


def test_long_modules_say_why() -> None:
    unexplained = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > LONG:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Why one module" not in doc:
                unexplained.append(f"{name} ({len(text.splitlines())} lines)")
    assert not unexplained, (
        "modules over 500 lines must say why at the top ('Why one module: ...'): "
        + ", ".join(unexplained)
    )
