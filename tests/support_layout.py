"""The import graph of a source tree, read with ``ast`` (nothing is imported), and the layout rules over it.

``scan(root)`` reads every module under ``root`` (a package directory such as ``src/azimds``): its docstring
and every import statement, at module level and inside functions, relative ones resolved to absolute names.
``from pkg import name`` imports the module ``pkg.name`` when the tree has one, else ``pkg``; ``import a.b.c``
imports ``a.b.c`` (the implicit import of its parent packages is not an edge). Imports under
``if TYPE_CHECKING:`` are kept but marked: they never run, so they make no cycle.

Each rule function returns its violations as lines (``path:line: what``), empty when the tree keeps the rule.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Import", "Module", "Tree", "crossings", "cycles", "docstring_problems", "foreign_imports",
           "private_imports", "scan"]


@dataclass(frozen=True)
class Import:
    """One imported module: ``target`` is absolute; ``name`` is what a ``from`` import takes from it, when that
    is not itself a module (``from .x import y``: target ``pkg.x``, name ``y``)."""

    source: str
    target: str
    name: str | None
    line: int
    type_checking: bool
    in_function: bool


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    docstring: str | None
    imports: list[Import] = field(default_factory=list)

    @property
    def package(self) -> str:
        """The package the module is in (a package's ``__init__`` is in the package itself)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass
class Tree:
    root: str  # the top package's name, e.g. "azimds"
    base: Path  # the directory that holds the top package
    modules: dict[str, Module]

    def where(self, module: str, line: int) -> str:
        return f"{self.modules[module].path.relative_to(self.base)}:{line}"

    def imports(self) -> Iterator[Import]:
        for module in self.modules.values():
            yield from module.imports

    def internal(self, target: str) -> bool:
        return within(target, self.root)


def within(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or below it (``a.b`` is within ``a``; ``ab`` is not)."""
    return name == prefix or name.startswith(prefix + ".")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- reading -------------------------------------------------------------------------------------------------

def scan(package_dir: Path) -> Tree:
    """Every ``.py`` module under ``package_dir`` (a package: its ``__init__.py`` is there), read, not run."""
    package_dir = Path(package_dir)
    if not (package_dir / "__init__.py").is_file():
        raise ValueError(f"{package_dir} is not a package")
    base = package_dir.parent
    modules: dict[str, Module] = {}
    parsed: dict[str, ast.Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        parsed[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
        # clean=False: a docstring that starts with a line break keeps its empty first line
        modules[name] = Module(name, path, is_package, ast.get_docstring(parsed[name], clean=False))
    for name, module in modules.items():
        _Imports(module, set(modules)).visit(parsed[name])
    return Tree(package_dir.name, base, modules)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    def __init__(self, module: Module, known: set[str]) -> None:
        self.module, self.known = module, known
        self.type_checking = 0
        self.functions = 0

    def add(self, target: str, name: str | None, node: ast.stmt) -> None:
        self.module.imports.append(Import(self.module.name, target, name, node.lineno, self.type_checking > 0,
                                          self.functions > 0))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_checking += 1
            for statement in node.body:
                self.visit(statement)
            self.type_checking -= 1
            for statement in node.orelse:  # the else branch runs
                self.visit(statement)
        else:
            self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, None, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.module.package.split(".")
            if node.level - 1 >= len(package):
                raise ValueError(f"{self.module.path}:{node.lineno}: relative import beyond the top package")
            base = ".".join(package[:len(package) - (node.level - 1)])
            origin = f"{base}.{node.module}" if node.module else base
        else:
            origin = node.module or ""
        for alias in node.names:
            submodule = f"{origin}.{alias.name}"
            if submodule in self.known:
                self.add(submodule, None, node)
            else:
                self.add(origin, alias.name, node)


# -- rules -----------------------------------------------------------------------------------------------------

def _sources(tree: Tree, within_: str) -> Iterator[Module]:
    return (module for name, module in sorted(tree.modules.items()) if within(name, within_))


def foreign_imports(tree: Tree, package: str) -> list[str]:
    """Imports by modules of ``package`` of anything neither in the standard library nor in the tree's own
    top package (``if TYPE_CHECKING:`` ones too: a type checker needs them installed)."""
    found: dict[str, None] = {}  # ordered, without the repeats of ``from x import a, b``
    for module in _sources(tree, package):
        for imp in module.imports:
            top = imp.target.partition(".")[0]
            if top not in sys.stdlib_module_names and top != tree.root:
                found[f"{tree.where(module.name, imp.line)}: {module.name} imports {imp.target} (third-party)"] = None
    return list(found)


def crossings(tree: Tree, package: str, *, forbidden: Iterable[str] = (), allowed: Iterable[str] | None = None
              ) -> list[str]:
    """Imports by modules of ``package`` of a module of the tree within one of ``forbidden``, or, when
    ``allowed`` is given, within none of ``allowed`` (``package`` itself is always allowed). Imports under
    ``if TYPE_CHECKING:`` count: a type is a dependency too."""
    forbidden, allowed = tuple(forbidden), None if allowed is None else (package, *allowed)
    found: dict[str, None] = {}
    for module in _sources(tree, package):
        for imp in module.imports:
            if not tree.internal(imp.target):
                continue
            if any(within(imp.target, f) for f in forbidden) or (
                    allowed is not None and not any(within(imp.target, a) for a in allowed)):
                found[f"{tree.where(module.name, imp.line)}: {module.name} imports {imp.target}"] = None
    return list(found)


def cycles(tree: Tree) -> list[list[str]]:
    """The import cycles among the tree's modules: strongly connected components of more than one module,
    counting imports inside functions but not those under ``if TYPE_CHECKING:``. Each sorted; sorted."""
    edges: dict[str, set[str]] = {name: set() for name in tree.modules}
    for imp in tree.imports():
        if not imp.type_checking and imp.target in tree.modules and imp.target != imp.source:
            edges[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm; the trees here are shallow enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return sorted(components)


def describe_cycle(tree: Tree, component: list[str]) -> str:
    """A cycle as its import lines, for a failure message."""
    members = set(component)
    lines = dict.fromkeys(f"{tree.where(imp.source, imp.line)}: {imp.source} -> {imp.target}"
                          + (" (inside a function)" if imp.in_function else "")
                          for name in component for imp in tree.modules[name].imports
                          if imp.target in members and imp.target != name and not imp.type_checking)
    return "cycle among " + ", ".join(component) + ":\n    " + "\n    ".join(lines)


def private_imports(tree: Tree) -> list[str]:
    """A private name taken from another module (``from .x import _y``, any module's); a private module of the
    tree (``from . import _common``, ``import pkg._mod``) imported from outside the package that holds it
    (that package and its subpackages may)."""
    found = []
    for imp in tree.imports():
        where = tree.where(imp.source, imp.line)
        if imp.name is not None and is_private(imp.name):
            found.append(f"{where}: {imp.source} imports the private name {imp.name} from {imp.target}")
        if not tree.internal(imp.target):
            continue
        parts = imp.target.split(".")
        for depth in range(1, len(parts)):
            if is_private(parts[depth]):
                holder = ".".join(parts[:depth])
                if not within(tree.modules[imp.source].package, holder):
                    found.append(f"{where}: {imp.source} imports the private module {'.'.join(parts[:depth + 1])} "
                                 f"from outside {holder}")
                break
    return found


def docstring_problems(tree: Tree) -> list[str]:
    """Modules without a docstring, or whose docstring does not say something on its first line."""
    found = []
    for name, module in sorted(tree.modules.items()):
        where = module.path.relative_to(tree.base)
        if module.docstring is None:
            found.append(f"{where}: {name} has no docstring")
        elif not module.docstring.split("\n", 1)[0].strip():
            found.append(f"{where}: {name}'s docstring has an empty first line")
    return found
