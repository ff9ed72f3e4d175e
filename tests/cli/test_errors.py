"""A failure is one line and an exit code; an unexpected one says it is a bug, its traceback behind --debug."""

from __future__ import annotations

import pytest

from azimds.cli import _common
from azimds.errors import ImdsUnavailable, NotFound, ProfileError


def crash() -> int:
    raise RuntimeError("the gears slipped")


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_is_called_a_bug(capsys, monkeypatch, debug):
    monkeypatch.delenv("AZIMDS_DEBUG", raising=False)
    _common.set_debug(debug)
    try:
        assert _common.run(crash) == 2
    finally:
        _common.set_debug(False)
    err = capsys.readouterr().err
    assert err.startswith("azimds: this is a bug in azimds, please report it: RuntimeError: the gears slipped")
    assert ("Traceback (most recent call last)" in err) is debug
    assert (err.count("\n") == 1) is not debug


def test_azimds_debug_variable_turns_tracebacks_on(capsys, monkeypatch):
    monkeypatch.setenv("AZIMDS_DEBUG", "1")
    assert _common.run(crash) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("error, code, line", [
    (NotFound("not found: /metadata/x", status=404), 1, "azimds: not found: /metadata/x\n"),
    (ImdsUnavailable("no answer from http://x: timed out"), 2, "azimds: no answer from http://x: timed out\n"),
    (ProfileError("vm.yaml", [("compute.name", "bad"), ("", "worse")]), 2,
     "azimds: vm.yaml: compute.name: bad\nazimds: vm.yaml: worse\n"),
])
def test_expected_errors_are_lines_and_codes(capsys, monkeypatch, error, code, line):
    monkeypatch.delenv("AZIMDS_DEBUG", raising=False)

    def fail() -> int:
        raise error

    assert _common.run(fail) == code
    assert capsys.readouterr().err == line


def test_debug_flag_from_the_command_line(capsys, monkeypatch):
    from azimds.cli import main

    monkeypatch.delenv("AZIMDS_DEBUG", raising=False)
    monkeypatch.setattr("azimds.cli.imds._run_client", lambda args: crash())
    parser_code = main(["--debug", "versions", "--endpoint", "http://127.0.0.1:9"])
    _common.set_debug(False)
    assert parser_code == 2 and "Traceback" in capsys.readouterr().err
