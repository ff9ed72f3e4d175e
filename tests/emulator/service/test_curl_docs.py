"""Every instance request line of the IMDS documentation, run verbatim with curl against the emulator.

Only the address changes (http://169.254.169.254 becomes the emulator's); the status and headers are
captured through a curlrc (``dump-header``), so the command lines themselves stay as the docs print them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.support import DATA

DOC = (DATA / "seed-imds-doc-2019.md").read_text()
LINES = [m.group(0).strip() for m in re.finditer(r"^\s*curl -H \"?Metadata:true\"? \"http://169\.254\.169\.254/metadata/instance[^\n]*$",
                                                  DOC, re.MULTILINE)]

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (make sysdeps installs it)")


def test_the_doc_has_the_lines_we_expect():
    assert len(LINES) == 12  # a change in extraction would silently test less


def run_doc_line(line: str, base: str, tmp_path) -> tuple[int, dict[str, str], bytes]:
    headers_file = tmp_path / "headers"
    (tmp_path / ".curlrc").write_text(f'dump-header = "{headers_file}"\nsilent\n')
    command = line.replace("http://169.254.169.254", base)
    run = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin:/usr/local/bin", "CURL_HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    raw = headers_file.read_bytes().decode("latin-1").split("\r\n")
    status = int(raw[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in raw[1:] if h)}
    return status, headers, run.stdout


@pytest.mark.parametrize("line", LINES)
def test_doc_line(shared_vm, tmp_path, line):
    status, headers, body = run_doc_line(line, shared_vm.url, tmp_path)
    assert headers["server"].startswith("IMDS/") and "date" in headers
    if "| base64" not in line:  # otherwise stdout is the decoded body
        assert int(headers["content-length"]) == len(body)
    if "api-version" not in line:
        assert status == 400
        assert json.loads(body)["newest-versions"] == ["2025-04-07", "2024-07-17", "2024-03-15"]
        return
    assert status == 200, body
    if "format=text" in line:
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert not body.endswith(b"\n")
        if "customData" in line:
            assert body == b""  # deprecated: always empty, so base64 --decode prints nothing
        elif line.split("?")[0].endswith("/instance"):
            assert body == b"compute/\nnetwork/"
        elif "publicIpAddress" in line:
            # the default VM sits behind a Standard load balancer: its NIC answers "" (the docs' own note)
            assert body == b""
        else:
            assert body and b"\n" not in body and not body.startswith(b"{")
    else:
        assert headers["content-type"] == "application/json; charset=utf-8"
        value = json.loads(body)
        assert body == json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        version = re.search(r"api-version=([\d-]+)", line).group(1)
        if "/network" in line:
            assert set(value) == {"interface"}
        elif "/compute" in line:
            assert ("zone" in value) == (version >= "2017-12-01") and "azEnvironment" not in value
        else:
            assert set(value) == {"compute", "network"}
            assert ("azEnvironment" in value["compute"]) == (version >= "2018-10-01")
