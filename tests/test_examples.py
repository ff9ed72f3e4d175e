"""The examples in examples/ run and pass, as a user would run them."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def test_pytest_example_project():
    project = ROOT / "examples" / "pytest-project"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
                         cwd=project, capture_output=True, text=True, timeout=120, env={
                             "PATH": "/usr/bin:/bin", "PYTHONPATH": str(project), "HOME": str(project)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout
