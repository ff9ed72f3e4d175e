"""What ``pip install azimds`` gives: the wheel and sdist build and pass ``twine check``; installed alone, without
extras, into a fresh virtual environment, the client and the CLI's IMDS and control-plane commands work against a
running emulator while importing nothing but the standard library; the emulator's commands say in one line which
extra to install. The build is made once per session (``python -m build --no-isolation``: no network needed)."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from azimds.emulator.testing import Emulator
from tests.support import ROOT

VERSION = __import__("azimds").__version__

#: Run by the light environment's Python: the CLI's ``main`` with the given arguments, then every module it
#: loaded that is neither the standard library nor azimds (with where it came from), written as JSON.
PROBE = r"""
import sys
from azimds.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
import json, os, sysconfig
stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
foreign = {}
for name, module in list(sys.modules.items()):
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names or top in ("azimds", "__main__"):
        continue
    where = getattr(module, "__file__", None)
    if where is not None and os.path.dirname(os.path.realpath(where)) == stdlib:
        continue  # the interpreter's own, such as _sysconfigdata_*
    foreign[name] = where
import azimds
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "foreign": foreign, "azimds": azimds.__file__}, out)
"""


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from the sdist as ``python -m build`` does."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    warnings = [line for line in (build.stdout + build.stderr).splitlines()
                if "warning" in line.lower() and "byte-compiling is disabled" not in line
                and "no previously-included files" not in line]
    assert warnings == []  # licence metadata, package data, the manifest: nothing setuptools would warn about
    return out


@pytest.fixture(scope="session")
def light(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the wheel in it (no extras, no pip, nothing else)."""
    venv = tmp_path_factory.mktemp("light") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--quiet", "--no-deps", "--no-index", "--no-cache-dir", str(wheel(dist))],
                             capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    return venv


def wheel(dist: Path) -> Path:
    return dist / f"azimds-{VERSION}-py3-none-any.whl"


def sdist(dist: Path) -> Path:
    return dist / f"azimds-{VERSION}.tar.gz"


def light_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would let the light Python see the project's modules."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP") and not key.startswith("AZIMDS_")}
    return {**env, **extra}


def probe(venv: Path, tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                                                dict[str, object]]:
    report = tmp_path / "probe.json"
    run = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE, str(report), *args], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert report.exists(), run.stderr
    return run, json.loads(report.read_text())


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel(dist)), str(sdist(dist))],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("PASSED") == 2


def test_the_wheel_needs_nothing_beyond_the_standard_library(dist: Path) -> None:
    with zipfile.ZipFile(wheel(dist)) as archive:
        names = set(archive.namelist())
        meta = email.message_from_bytes(archive.read(f"azimds-{VERSION}.dist-info/METADATA"))
    requires = meta.get_all("Requires-Dist") or []
    assert requires and all("extra ==" in requirement for requirement in requires)  # every one behind an extra
    assert {"emulator", "postgres"} <= set(meta.get_all("Provides-Extra") or [])
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown" and "## Install" in meta.get_payload()
    assert {"azimds/emulator/profiles/default.yaml", f"azimds-{VERSION}.dist-info/licenses/LICENSE",
            "azimds/cli/__init__.py", "azimds/client/__init__.py"} <= names
    assert not [name for name in names if name.startswith("tests/") or "__pycache__" in name]


def test_the_sdist_is_the_source_tree(dist: Path) -> None:
    with tarfile.open(sdist(dist)) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    assert {"PKG-INFO", "README.md", "LICENSE", "pyproject.toml", "Makefile",
            "src/azimds/emulator/profiles/default.yaml", "src/azimds/cli/__init__.py", "tests/conftest.py",
            "tests/data/README.md", "scripts/sync_readme.py",
            "examples/pytest-project/app.py"} <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


@pytest.fixture(scope="module")
def emulator():
    profile = {"compute": {"tags": "seed:ok;role:web", "name": "light-vm"}, "identity": {"systemAssigned": True}}
    with Emulator(profile) as imds:
        yield imds


def test_the_light_install_reads_imds_with_the_standard_library_only(light: Path, emulator, tmp_path: Path) -> None:
    env = light_env(AZIMDS_ENDPOINT=emulator.url)
    tags = subprocess.run([str(light / "bin" / "azimds"), "tags", "seed"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert (tags.returncode, tags.stdout, tags.stderr) == (0, "ok\n", "")
    root = tmp_path / "root.pem"
    root.write_text(emulator.ca_pem())
    for args in (["tags", "seed"], ["tags", "nosuch"], ["get", "--text", "instance/compute/name"], ["versions"],
                 ["dump"], ["events"], ["token"], ["attested", "--verify", "--trust-root", str(root)],
                 ["conformance", "--list"]):
        run, report = probe(light, tmp_path, *args, env=env)
        assert report["code"] == (1 if args == ["tags", "nosuch"] else 0), (args, run.stderr)
        if args[0] == "get":
            assert run.stdout == "light-vm\n"
        assert report["foreign"] == {}, args
        assert str(report["azimds"]).startswith(str(light))  # the wheel's azimds, not the project's


def test_the_light_install_steers_an_emulator_with_ctl(light: Path, emulator, tmp_path: Path) -> None:
    """``azimds ctl`` speaks HTTP with the client's transport: it needs no extra either."""
    env = light_env(AZIMDS_ENDPOINT=emulator.url, AZIMDS_CONTROL=emulator.control_url,
                    AZIMDS_CONTROL_TOKEN=emulator.token)
    run, report = probe(light, tmp_path, "ctl", "tags", "seed=changed", "role=web", env=env)
    assert (report["code"], report["foreign"]) == (0, {}), run.stderr
    tags = subprocess.run([str(light / "bin" / "azimds"), "tags", "seed"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert tags.stdout == "changed\n"


@pytest.mark.parametrize("args", [["serve"], ["serve", "--port", "0", "--watch"], ["run", "--", "true"],
                                  ["ca", "export"], ["_worker", "--index", "0", "--listen-fd", "3", "--link-fd", "4"]])
def test_the_emulator_without_its_extra_says_what_to_install(light: Path, tmp_path: Path, args: list[str]) -> None:
    run = subprocess.run([str(light / "bin" / "azimds"), *args], capture_output=True, text=True,
                         env=light_env(HOME=str(tmp_path)), cwd=tmp_path, timeout=60)
    assert (run.returncode, run.stdout) == (2, "")
    line = "azimds: the emulator needs its extra: pip install 'azimds[emulator]' (not installed: "
    assert run.stderr.startswith(line) and run.stderr.endswith(")\n") and run.stderr.count("\n") == 1
    assert {"pydantic", "PyYAML", "cryptography"} <= set(run.stderr[len(line):-2].split(", "))
    assert not list(tmp_path.iterdir())  # nothing made: no state directory, no CA


def runtime_of(name: str) -> set[Path]:
    """The top-level modules of distribution ``name`` and of everything it requires here (markers evaluated)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: set[Path] = set()
    names, seen = [name], set()
    while names:
        dist = metadata.distribution(names.pop())
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        for file in dist.files or []:
            top = file.parts[0]
            module = len(file.parts) > 1 or top.endswith(".py")  # a package, or a module file
            if module and not top.endswith((".dist-info", ".pth")) and top != "..":
                found.add(Path(str(dist.locate_file(top))))
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                names.append(requirement.name)
    return found


def test_pytest_with_the_light_install_runs_and_its_fixtures_say_what_to_install(light: Path, tmp_path: Path) -> None:
    """azimds' pytest plugin is registered by the wheel's entry point, extra or not: pytest must still start, and
    the fixtures must say what they need. pytest (and what it requires) comes from this environment, alone on
    PYTHONPATH."""
    only_pytest = tmp_path / "pytest-only"
    only_pytest.mkdir()
    for source in runtime_of("pytest"):
        (only_pytest / source.name).symlink_to(source)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_app.py").write_text("def test_plain():\n    pass\n\n\ndef test_with_imds(imds):\n    pass\n")
    env = light_env(PYTHONPATH=str(only_pytest))
    for name in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(name, None)
    run = subprocess.run([str(light / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
                         capture_output=True, text=True, cwd=suite, timeout=120, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 1 error" in run.stdout, run.stdout
    assert ("the imds fixture needs the emulator: pip install 'azimds[emulator]' (pydantic is missing)"
            in run.stdout), run.stdout
