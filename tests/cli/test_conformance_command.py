"""``azimds conformance``: the report it writes, ``--compare`` and its exit codes, ``--list``, one-line errors,
and that the CLI loads the probes only when the command runs.

Run in this process (``tests.support.azimds_inprocess``) against an in-process emulator without a rate limit,
at ``--interval 0``; once as a real process at the default pace.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from azimds import Emulator
from azimds.client._conformance import NOT_PROBED, PROBES
from tests.support import azimds_inprocess, azimds_process


def one_line_error(done: subprocess.CompletedProcess, code: int = 2) -> str:
    assert done.returncode == code, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("azimds"), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def vm() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def report_file(vm: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the default VM, written by the command."""
    path = tmp_path_factory.mktemp("conformance") / "report.json"
    done = azimds_inprocess("conformance", "--endpoint", vm.url, "--interval", "0", "--output", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == f"azimds: {len(PROBES)} probes written to {path}\n"
    return path


def test_the_report_is_one_json_document_with_sorted_keys(report_file):
    """--output FILE: the whole report, keys sorted, indented, every probe in it."""
    text = report_file.read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert [entry["id"] for entry in doc["probes"]] == [probe.id for probe in PROBES]
    assert doc["format"] == 1 and doc["azimds"]


def test_without_output_the_report_goes_to_stdout(vm):
    done = azimds_inprocess("conformance", "--endpoint", vm.url, "--interval", "0", "-v")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["probes"]) == len(PROBES)
    assert "azimds: instance.no-api-version: 400\n" in done.stderr  # -v: one line per probe


def test_compare_with_the_same_emulator_finds_nothing(vm, report_file):
    """Self-consistency: the report against the emulator that wrote it: exit 0, nothing printed."""
    done = azimds_inprocess("conformance", "--compare", str(report_file), "--endpoint", vm.url, "--interval", "0")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_compare_lists_exactly_what_was_doctored(vm, report_file, tmp_path):
    """One status, one body and one shape key changed, and an id this azimds lacks: those four lines, exit 1."""
    doc = json.loads(report_file.read_text())
    entries = {entry["id"]: entry for entry in doc["probes"]}
    entries["instance.unknown-key"]["status"] = 400
    entries["identity.token.no-resource"]["body"] = entries["identity.token.no-resource"]["body"].replace(
        "query variable", "parameter")
    del entries["identity.info"]["shape"]["tenantId"]
    doc["probes"].append({"id": "instance.from-the-future", "status": 200})
    doctored = tmp_path / "doctored.json"
    doctored.write_text(json.dumps(doc))
    done = azimds_inprocess("conformance", "--compare", str(doctored), "--endpoint", vm.url, "--interval", "0")
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "instance.from-the-future: in the report, not a probe of this azimds",
        "instance.unknown-key: status 400 in report, 404 here",
        "identity.token.no-resource: body differs: at character 58: '…\"error_description\":\"Required parameter "
        "\\'resource\\' is missin…' in report, '…\"error_description\":\"Required query variable \\'resource\\' "
        "is m…' here",
        'identity.info: shape $.tenantId: missing in report, "string" here',
    ]
    assert done.stderr == ""


def test_compare_can_also_write_this_side_s_report(vm, report_file, tmp_path):
    out = tmp_path / "here.json"
    done = azimds_inprocess("conformance", "--compare", str(report_file), "--endpoint", vm.url, "--interval", "0",
                            "--output", str(out))
    assert done.returncode == 0 and done.stdout == ""
    assert len(json.loads(out.read_text())["probes"]) == len(PROBES)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": 2, "probes": []}', b"\xff\xfe",
                                     b'{"format": 1, "probes": [{"status": 200}]}'])
def test_a_bad_report_file_is_one_line_and_exit_2(vm, tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    done = azimds_inprocess("conformance", "--compare", str(bad), "--endpoint", vm.url)
    line = one_line_error(done)
    assert line.startswith(f"azimds: {bad}: not a conformance report"), line
    assert done.stdout == ""


def test_a_missing_report_file_is_one_line_and_exit_2(vm, tmp_path):
    done = azimds_inprocess("conformance", "--compare", str(tmp_path / "nope.json"), "--endpoint", vm.url)
    assert "No such file" in one_line_error(done)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_is_one_line_and_exit_2():
    port = closed_port()
    done = azimds_inprocess("conformance", "--endpoint", f"http://127.0.0.1:{port}")
    assert one_line_error(done).startswith(f"azimds: no answer from http://127.0.0.1:{port}: ")
    assert done.stdout == ""


@pytest.mark.parametrize("args", [["--interval", "-1"], ["--interval", "x"], ["--deadline", "0"],
                                  ["--list", "--compare", "r.json"], ["--endpoint", ""], ["--endpoint", "ftp://x"]])
def test_usage_errors_are_one_line_and_exit_2(args):
    one_line_error(azimds_inprocess("conformance", *args))


def test_list_prints_the_probes_and_sends_nothing():
    """--list needs no IMDS (the endpoint here is a closed port)."""
    done = azimds_inprocess("conformance", "--list", "--endpoint", f"http://127.0.0.1:{closed_port()}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:len(PROBES)]] == [probe.id for probe in PROBES]
    assert lines[len(PROBES) + 1] == "not probed:"
    assert len(lines) == len(PROBES) + 2 + len(NOT_PROBED)


def test_the_default_endpoint_follows_the_other_commands(vm):
    """$AZIMDS_ENDPOINT when --endpoint is not given, as every IMDS command."""
    import os

    env = dict(os.environ, AZIMDS_ENDPOINT=vm.url)
    done = azimds_inprocess("conformance", "--interval", "0", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["endpoint"] == vm.url


def test_a_real_process(vm, tmp_path):
    """End to end, as on a VM: a process writes the report, and a second one compares it: no difference."""
    out = tmp_path / "report.json"
    done = azimds_process("conformance", "--endpoint", vm.url, "--interval", "0", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text())["probes"]) == len(PROBES)
    done = azimds_process("conformance", "--compare", str(out), "--endpoint", vm.url, "--interval", "0")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_cli_loads_the_probes_only_when_the_command_runs():
    """Building every parser (azimds --help) imports neither the probes nor the PKCS#7 reader."""
    code = ("import sys; from azimds.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('azimds.client.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout
    assert "_conformance" not in loaded and "_pkcs7" not in loaded, loaded
