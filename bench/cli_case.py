"""CLI case: how long ``azimds tags KEY`` takes end to end, beside curl and a bare interpreter.

Scripts on a fresh VM call ``azimds tags KEY`` where they would otherwise call curl, once per value they
need, so its start-up is the cost users feel. This measures the median wall time of that command against a
running emulator, of ``curl -s -H Metadata:true`` making the same request, and of ``python -c pass`` on
the same interpreter (the floor no Python CLI can beat). Targets: azimds tags at most 80 ms, and at most 3x
``python -c pass``.

Python is run as an installed package runs: with its bytecode cached (in a temporary PYTHONPYCACHEPREFIX,
never in the tree). Beside it, the figure with PYTHONDONTWRITEBYTECODE=1, as this workplace sets it, where
an editable install compiles azimds from source on every run.

    .venv/bin/python bench/cli_case.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 80.0
TARGET_OVER_PYTHON = 3.0
KEY = "tag_key"
EXPECTED = "configured-by-tag"  # its value in the embedded default VM
API_VERSION = "2021-02-01"  # the client's pinned version: curl makes the very request azimds makes
WARMUP = 2
READY = re.compile(r"azimds: serving (http://[^/]+)/metadata\n")


def run(runs: int = 20) -> dict[str, float | int | bool | None]:
    """Medians in ms of each command over ``runs`` runs (after warm-up), their ratios, and the verdict."""
    if runs < 1:
        raise ValueError("runs must be 1 or more")
    bin_dir = _bin_dir()
    curl = shutil.which("curl")
    with tempfile.TemporaryDirectory(prefix="azimds-bench-") as tmp, _emulator(bin_dir, tmp) as base:
        cached = _environment(pycache=os.path.join(tmp, "pycache"))
        tags = [str(bin_dir / "azimds"), "tags", KEY, "--endpoint", base]
        _check(tags, cached)
        azimds = _median_ms(tags, cached, runs)
        azimds_uncached = _median_ms(tags, _environment(_without_azimds(cached["PYTHONPYCACHEPREFIX"], tmp),
                                                        write=False), runs)
        url = f"{base}/metadata/instance/compute?api-version={API_VERSION}"
        curl_ms = _median_ms([curl, "-s", "-H", "Metadata:true", url], cached, runs) if curl else None
        python = _median_ms([str(bin_dir / "python"), "-c", "pass"], cached, runs)
    return {
        "runs": runs,
        "azimds_tags_ms": azimds,
        "azimds_tags_uncached_ms": azimds_uncached,
        "curl_ms": curl_ms,
        "python_ms": python,
        "azimds_over_curl": round(azimds / curl_ms, 2) if curl_ms else None,
        "azimds_over_python": round(azimds / python, 2),
        "target_ms": TARGET_MS,
        "met": azimds <= TARGET_MS,
    }


def _bin_dir() -> Path:
    """The directory of the interpreter and the azimds script: this interpreter's, else the repo's venv."""
    here = Path(sys.executable).parent
    return here if (here / "azimds").exists() else ROOT / ".venv" / "bin"


def _without_azimds(pycache: str, tmp: str) -> str:
    """A copy of the bytecode cache ``pycache`` (a mirror of the sources' paths) without azimds's own."""
    import azimds

    copy = os.path.join(tmp, "pycache-without-azimds")
    shutil.copytree(pycache, copy)
    package = Path(azimds.__file__).resolve().parent
    shutil.rmtree(Path(copy) / package.relative_to(package.anchor))
    return copy


def _environment(pycache: str, write: bool = True) -> dict[str, str]:
    """Bytecode read from ``pycache`` only (never from ``__pycache__`` beside the sources, which an earlier run
    may have left), and written there unless ``write`` is false: then what is not in ``pycache`` is compiled from
    source on every run."""
    drop = {"PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "AZIMDS_ENDPOINT"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env["PYTHONPYCACHEPREFIX"] = pycache
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@contextmanager
def _emulator(bin_dir: Path, state_dir: str) -> Iterator[str]:
    """``azimds serve`` on a free port, no rate limit; yields its base URL."""
    proc = subprocess.Popen(
        [str(bin_dir / "azimds"), "serve", "--port", "0", "--rate-limit", "0", "--control-port", "0",
         "--state-dir", state_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout
    assert stdout is not None
    try:
        ready, _, _ = select.select([stdout], [], [], 30)
        line = stdout.readline() if ready else ""
        match = READY.fullmatch(line)
        if not match:
            proc.kill()
            raise RuntimeError(f"azimds serve did not start: {line!r} {proc.communicate()[1]}")
        yield match.group(1)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=10)


def _check(command: list[str], env: dict[str, str]) -> None:
    """Run once and make sure the command answers what it should (and warm the bytecode cache)."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or done.stdout != EXPECTED + "\n":
        raise RuntimeError(f"{' '.join(command)} answered {done.returncode} {done.stdout!r} {done.stderr!r}")


def _median_ms(command: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for index in range(WARMUP + runs):
        started = time.perf_counter()
        # No timeout=: with one, subprocess polls the child with growing sleeps and the times come out
        # in steps of several milliseconds.
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
        if index >= WARMUP:
            times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def _table(results: dict[str, float | int | bool | None]) -> str:
    def ms(value: object) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    rows = [("azimds tags KEY", results["azimds_tags_ms"]),
            ("  (compiled on every run)", results["azimds_tags_uncached_ms"]),
            ("curl -s -H Metadata:true", results["curl_ms"]),
            ("python -c pass", results["python_ms"])]
    lines = [f"{'command':<28}{'median ms':>10}"]
    lines += [f"{name:<28}{ms(value):>10}" for name, value in rows]
    ratio_curl = results["azimds_over_curl"]
    lines.append(f"azimds/curl {ratio_curl if ratio_curl is not None else 'n/a'}x, "
                 f"azimds/python {results['azimds_over_python']}x, {results['runs']} runs each; "
                 f"target <= {TARGET_MS:.0f} ms: {'met' if results['met'] else 'MISSED'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (default: 20)")
    results = run(parser.parse_args().runs)
    print(_table(results))
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
