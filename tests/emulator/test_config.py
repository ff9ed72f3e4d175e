"""One configuration: defaults < profile < environment < flags, every value checked once, its source named."""

from __future__ import annotations

import os
import subprocess

import pytest

from azimds.emulator.app import configure
from azimds.emulator.config import DEFAULT_PORT, OPTIONS, Config, env_options, markdown_table
from azimds.errors import ProfileError
from tests.support import AZIMDS, ROOT, ServeProcess, fetch

PROFILE = {"azimds": {"rateLimit": 7, "serverVersion": "1.2.3.4", "faults": [{"path": "/a", "status": 500}]}}


def test_later_sources_win():
    config, _ = configure(defaults={"profile": PROFILE})
    assert (config.rate_limit, config.server_version) == (7, "1.2.3.4")
    assert config.sources["rate_limit"] == "azimds.rateLimit"
    config, _ = configure(env={"AZIMDS_RATE_LIMIT": "9"}, defaults={"profile": PROFILE})
    assert config.rate_limit == 9 and config.sources["rate_limit"] == "AZIMDS_RATE_LIMIT"
    config, _ = configure(env={"AZIMDS_RATE_LIMIT": "9"}, flags={"rate_limit": "11"}, defaults={"profile": PROFILE})
    assert config.rate_limit == 11 and config.sources["rate_limit"] == "--rate-limit"
    assert config.server_version == "1.2.3.4"  # untouched by the others


def test_faults_add_up_from_every_source():
    config, _ = configure(env={"AZIMDS_FAULT": "/b=status:503 /c=drop"}, flags={"fault": ["/d=latency:1"]},
                         defaults={"profile": PROFILE})
    assert [rule.path for rule in config.fault] == ["/a", "/b", "/c", "/d"]


@pytest.mark.parametrize("source, where, problem", [
    ({"flags": {"port": "70000"}}, "--port", "port must be 0-65535"),
    ({"env": {"AZIMDS_PORT": "x"}}, "AZIMDS_PORT", "must be a number"),
    ({"env": {"AZIMDS_CLOCK_SPEED": "inf"}}, "AZIMDS_CLOCK_SPEED", "must be a finite number"),
    ({"flags": {"clock": "fast"}}, "--clock", "must be one of real, manual"),
    ({"flags": {"public_url": "ftp://x"}}, "--public-url", "must be http://HOST[:PORT]"),
    ({"defaults": {"profile": {"azimds": {"rateLimit": "lots"}}}}, "<dict>: azimds.rateLimit", "must be a number"),
    ({"defaults": {"profile": {"azimds": {"colour": "red"}}}}, "<dict>: azimds.colour", "unknown field"),
    ({"flags": {"fault": ["/x=status:999"]}}, "--fault", "status: Input should be less than or equal to 599"),
])
def test_a_bad_value_names_where_it_came_from(source, where, problem):
    with pytest.raises(ProfileError) as info:
        configure(**source)
    assert f"{where}: " in str(info.value) and problem in str(info.value), str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ProfileError) as info:
        Config.build(env={"AZIMDS_PORT": "-1"}, flags={"rate_limit": "-2", "clock": "x"})
    assert [p.where for p in info.value.problems] == ["AZIMDS_PORT", "--rate-limit", "--clock"]


def test_only_option_variables_are_read():
    assert env_options({"AZIMDS_PORT": "1", "AZIMDS_ENDPOINT": "http://x", "PATH": "/bin"}) == {"AZIMDS_PORT": "1"}


def test_the_table_names_every_option_once():
    assert len({o.name for o in OPTIONS}) == len({o.env for o in OPTIONS}) == len({o.flag for o in OPTIONS}) \
        == len(OPTIONS)
    table = markdown_table()
    assert all(f"`{o.flag}" in table and f"`{o.env}`" in table for o in OPTIONS)
    readme = (ROOT / "README.md").read_text()
    assert readme.split("<!-- options:start -->\n")[1].split("\n<!-- options:end -->")[0] == table


def test_serve_takes_options_from_the_environment(tmp_path):
    env = {**os.environ, "AZIMDS_SERVER_VERSION": "9.8.7.6", "AZIMDS_RATE_LIMIT": "0"}
    proc = ServeProcess(env=env)
    try:
        reply = fetch(proc.url, "/metadata/versions")
        assert reply.headers["server"] == "IMDS/9.8.7.6"
    finally:
        proc.stop()


def test_serve_refuses_a_bad_variable_in_one_line():
    run = subprocess.run([*AZIMDS, "serve", "--port", "0"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "AZIMDS_RATE_LIMIT": "-1"})
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "azimds: AZIMDS_RATE_LIMIT: must be 0 (off) or more, not '-1'\n"


def test_options_are_never_abbreviated():
    run = subprocess.run([*AZIMDS, "serve", "--state-d", "/tmp/x"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "unrecognized arguments: --state-d" in run.stderr


def test_the_default_port():
    assert Config().port == DEFAULT_PORT == 8169
