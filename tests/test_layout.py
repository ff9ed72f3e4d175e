"""The package layout, read from the source with ``ast``: who may import whom, no cycles, no private reach-ins,
a docstring on every module. A boundary crossed or a cycle made fails here, naming the file and line.

The rules (imports inside functions count as much as module-level ones):

- ``azimds.client`` runs on bare VMs: the standard library, ``azimds.errors``, ``azimds.azure`` and itself;
  nothing third-party, nothing of the emulator or the CLI.
- ``azimds.azure`` and ``azimds.errors`` are the base: they import nothing else of azimds.
- The emulator is layered ``model`` < ``service`` < ``world`` < ``control`` < ``app``/``testing``: a layer
  imports none above it, and none imports the CLI. ``emulator.config`` is anyone's.
- No import cycle among modules (``if TYPE_CHECKING:`` imports excepted: they never run).
- No private name taken from another module; a private module only from inside its own package.
- Every module has a docstring that says something on its first line.

The checker (``tests/support_layout.py``) is itself tested below on small trees that break each rule.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support_layout import (
    Tree,
    crossings,
    cycles,
    describe_cycle,
    docstring_problems,
    foreign_imports,
    private_imports,
    scan,
)

SRC = ROOT / "src" / "azimds"
TREE = scan(SRC)  # read once, at collection: the client's modules are parameters
CLIENT_MODULES = sorted(name for name in TREE.modules if name == "azimds.client" or name.startswith("azimds.client."))

#: Rule breaches known and being fixed elsewhere, each xfail (strict: it turns red the day it is fixed, and
#: the entry must then go). Only the client's third-party rule has one.
KNOWN_FOREIGN: dict[str, str] = {}

EMULATOR = "azimds.emulator"
#: Each emulator layer, and what it must not import (besides the CLI, which no layer may).
LAYERS = {
    "model": ("service", "world", "control", "app", "testing", "pytest_plugin", "netns"),
    "service": ("world", "control", "app", "testing"),
    "world": ("control", "app", "testing"),
    "control": ("app", "testing"),
}


def lines(found: list[str]) -> str:
    return "\n".join(found)


# -- the real tree ---------------------------------------------------------------------------------------------

def test_the_scan_sees_the_whole_package() -> None:
    """The rules below pass vacuously if the scan misses modules or imports: it does not."""
    on_disk = set(SRC.rglob("*.py"))
    assert {module.path for module in TREE.modules.values()} == on_disk
    app = {imp.target for imp in TREE.modules["azimds.emulator.app"].imports}
    assert {"azimds.emulator.config", "azimds.emulator.world.world", "asyncio", "__future__"} <= app
    in_functions = {imp.target for imp in TREE.modules["azimds.cli"].imports if imp.in_function}
    assert {"azimds.cli.ctl", "azimds.cli.emulator", "azimds.cli.imds", "azimds"} <= in_functions
    type_only = {imp.target for imp in TREE.modules["azimds"].imports if imp.type_checking}
    assert "azimds.emulator.testing" in type_only


@pytest.mark.parametrize("module", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FOREIGN[name]))
    if name in KNOWN_FOREIGN else name
    for name in CLIENT_MODULES])
def test_client_module_imports_only_the_standard_library_and_azimds(module: str) -> None:
    found = [line for line in foreign_imports(TREE, "azimds.client") if f": {module} imports " in line]
    assert not found, lines(found)


def test_known_breaches_name_modules_that_exist() -> None:
    """A known breach whose module is gone (renamed in the rewrite?) must leave KNOWN_FOREIGN too."""
    assert set(KNOWN_FOREIGN) <= set(CLIENT_MODULES)


def test_client_imports_nothing_of_the_emulator_or_the_cli() -> None:
    found = crossings(TREE, "azimds.client", allowed=["azimds.errors", "azimds.azure"])
    assert not found, lines(found)


@pytest.mark.parametrize("module", ["azimds.azure", "azimds.errors"])
def test_the_base_modules_import_no_other_part_of_azimds(module: str) -> None:
    found = crossings(TREE, module, allowed=["azimds.azure", "azimds.errors"])
    assert not found, lines(found)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_an_emulator_layer_imports_nothing_above_it(layer: str) -> None:
    assert any(name.startswith(f"{EMULATOR}.{layer}.") for name in TREE.modules)  # the layer is there
    forbidden = [f"{EMULATOR}.{above}" for above in LAYERS[layer]] + ["azimds.cli"]
    found = crossings(TREE, f"{EMULATOR}.{layer}", forbidden=forbidden)
    assert not found, lines(found)


def test_no_import_cycles() -> None:
    found = cycles(TREE)
    assert not found, "\n".join(describe_cycle(TREE, component) for component in found)


def test_no_private_imports_across_packages() -> None:
    found = private_imports(TREE)
    assert not found, lines(found)


def test_every_module_has_a_docstring() -> None:
    found = docstring_problems(TREE)
    assert not found, lines(found)


# -- the checker can fail: small trees that break each rule ----------------------------------------------------

def make_tree(root: Path, files: dict[str, str]) -> Tree:
    """Write ``files`` (paths relative to ``root``, under a top package ``pkg``) and scan ``root/pkg``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return scan(root / "pkg")


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/a.py": '"""A."""\nfrom .b import thing\n',
        "pkg/b.py": '"""B."""\nthing = 1\n\n\ndef later():\n    from . import a\n    return a\n',
        "pkg/c.py": '"""C."""\nimport pkg.d\n',
        "pkg/d.py": '"""D."""\n\n\ndef f():\n    from .c import x\n',
    })
    assert cycles(tree) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert "pkg/b.py:6: pkg.b -> pkg.a (inside a function)" in describe_cycle(tree, ["pkg.a", "pkg.b"])


def test_type_checking_imports_and_implicit_parent_imports_make_no_cycle(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/c.py": '"""C."""\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n    from .d import X\nelse:\n    X = 1\n',
        "pkg/d.py": '"""D."""\nfrom .c import X\n',
        "pkg/e.py": '"""E."""\nimport typing\nif typing.TYPE_CHECKING:\n    from . import f\n',
        "pkg/f.py": '"""F."""\nfrom . import e\n',
        # the package imports its leaf; the leaf imports a sibling (implicitly the package): no cycle
        "pkg/sub/__init__.py": '"""Sub."""\nfrom .leaf import X\n',
        "pkg/sub/leaf.py": '"""Leaf."""\nfrom . import sibling\nimport pkg.sub.sibling\nX = 1\n',
        "pkg/sub/sibling.py": '"""Sibling."""\n',
    })
    assert cycles(tree) == []
    assert [imp.type_checking for imp in tree.modules["pkg.c"].imports] == [True]


def test_an_explicit_import_of_a_package_init_counts(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/sub/__init__.py": '"""Sub."""\nfrom .leaf import X\nVERSION = "1"\n',
        "pkg/sub/leaf.py": '"""Leaf."""\nfrom . import VERSION\nX = 1\n',
    })
    assert cycles(tree) == [["pkg.sub", "pkg.sub.leaf"]]


def test_relative_imports_resolve_to_modules_or_their_package(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/one/__init__.py": '"""One."""\nfrom . import two, NAME\nfrom .two import thing\n',
        "pkg/one/two.py": '"""Two."""\nfrom .. import other\nfrom ..other import x as y\nimport json.decoder\n',
        "pkg/other.py": '"""Other."""\n',
    })
    assert [(imp.target, imp.name) for imp in tree.modules["pkg.one"].imports] == [
        ("pkg.one.two", None), ("pkg.one", "NAME"), ("pkg.one.two", "thing")]
    assert [(imp.target, imp.name) for imp in tree.modules["pkg.one.two"].imports] == [
        ("pkg.other", None), ("pkg.other", "x"), ("json.decoder", None)]


def test_a_relative_import_beyond_the_top_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="beyond the top package"):
        make_tree(tmp_path, {"pkg/__init__.py": '"""Top."""\nfrom .. import elsewhere\n'})


def test_boundary_crossings_are_found(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/errors.py": '"""Errors."""\n',
        "pkg/client/__init__.py": '"""Client."""\nfrom ..errors import Oops\n\n\ndef run():\n'
                                  '    from ..emulator.model import thing\n    import requests.adapters\n'
                                  '    import json\n',
        "pkg/emulator/__init__.py": '"""Emulator."""\n',
        "pkg/emulator/model/__init__.py": '"""Model."""\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n'
                                          '    from ..world.state import State\nfrom ..config import X\n',
        "pkg/emulator/world/__init__.py": '"""World."""\n',
        "pkg/emulator/world/state.py": '"""State."""\n',
        "pkg/emulator/config.py": '"""Config."""\n',
    })
    assert crossings(tree, "pkg.client", allowed=["pkg.errors"]) == [
        "pkg/client/__init__.py:6: pkg.client imports pkg.emulator.model"]
    assert foreign_imports(tree, "pkg.client") == [
        "pkg/client/__init__.py:7: pkg.client imports requests.adapters (third-party)"]
    assert crossings(tree, "pkg.emulator.model", forbidden=["pkg.emulator.world"]) == [
        "pkg/emulator/model/__init__.py:4: pkg.emulator.model imports pkg.emulator.world.state"]
    assert crossings(tree, "pkg.emulator.world", forbidden=["pkg.emulator.model"]) == []
    # a forbidden name is a package, not a string prefix: pkg.emulator.world is not within pkg.emulator.wor
    assert crossings(tree, "pkg.emulator.model", forbidden=["pkg.emulator.wor"]) == []


def test_private_imports_are_found(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/client/__init__.py": '"""Client."""\nfrom ._impl import Client\nfrom . import _impl\n',
        "pkg/client/_impl.py": '"""Impl."""\nfrom ._helpers import _secret\nClient = 1\n',
        "pkg/client/_helpers.py": '"""Helpers."""\n_secret = 1\n',
        "pkg/client/sub/__init__.py": '"""Sub."""\nfrom .._impl import Client\n',
        "pkg/cli.py": '"""CLI."""\nfrom .client._impl import Client\n\n\ndef f():\n'
                      '    from .client import _impl\n    from os import _exit\n    from . import __version__\n',
    })
    assert sorted(private_imports(tree)) == [
        "pkg/cli.py:2: pkg.cli imports the private module pkg.client._impl from outside pkg.client",
        "pkg/cli.py:6: pkg.cli imports the private module pkg.client._impl from outside pkg.client",
        "pkg/cli.py:7: pkg.cli imports the private name _exit from os",
        "pkg/client/_impl.py:2: pkg.client._impl imports the private name _secret from pkg.client._helpers",
    ]


def test_missing_and_blank_docstrings_are_found(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": '"""Top."""\n',
        "pkg/bare.py": "import os\n",
        "pkg/blank.py": '"""\nStarts on the second line."""\n',
        "pkg/late.py": 'import os\n"""Not a docstring: a statement came first."""\n',
        "pkg/good.py": '"""Says it.\n\nMore."""\n',
    })
    assert docstring_problems(tree) == [
        "pkg/bare.py: pkg.bare has no docstring",
        "pkg/blank.py: pkg.blank's docstring has an empty first line",
        "pkg/late.py: pkg.late has no docstring",
    ]
