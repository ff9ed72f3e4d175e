"""The emulator's one configuration object, and every option it has, each written once.

``OPTIONS`` lists every option with its flag (``azimds serve --rate-limit``), its environment variable
(``AZIMDS_RATE_LIMIT``), its key in a profile's ``azimds:`` section where it has one (``rateLimit``), its
default and what it means. ``Config.build`` makes the configuration from them, later sources winning:
defaults < the profile's ``azimds:`` section < environment < flags (or ``Emulator(...)`` keywords), and
validates every value in one place, naming where a bad one came from. The CLI builds ``serve``'s flags from
this table and the README's option table is generated from it (a test keeps them equal).

Standard library only at import: the CLI reads this module on every ``serve``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

from ..azure import INSTANCE_VERSIONS
from ..errors import ProfileError, UsageError

TYPE_CHECKING = False  # typing costs milliseconds at import, and ``azimds ctl`` reads this module
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_CONTROL_PORT", "DEFAULT_PORT", "ENV_PREFIX", "OPTIONS", "Config", "Option", "default_state_dir",
           "markdown_table"]

DEFAULT_PORT = 8169  # the real service listens on 169.254.169.254:80; this is our loopback default
DEFAULT_CONTROL_PORT = 8170
ENV_PREFIX = "AZIMDS_"
#: ``Server`` header: ``IMDS/`` and the newest build seen on a real VM (2024; spec §2).
SERVER_VERSION = "150.870.65.1253"
MAX_WORKERS = 64


def default_state_dir() -> str:
    """Where ``serve`` keeps state, keys and its control token: ``$XDG_STATE_HOME/azimds``, else
    ``~/.local/state/azimds``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "azimds")


# -- value parsers: text (a flag or a variable) or a profile value to a typed value; ValueError says why ----

def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, not {value!r}")
    return number


def _whole(value: Any) -> int:
    number = _number(value)
    if number != int(number):
        raise ValueError(f"must be a whole number, not {value!r}")
    return int(number)


def _rate(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must be 0 (off) or more, not {value!r}")
    return number


def _count(value: Any) -> int:
    number = _whole(value)
    if number < 0:
        raise ValueError(f"must be 0 (off) or more, not {value!r}")
    return number


def _delay(value: Any) -> float:
    number = _number(value)
    if not 0 <= number <= 600:
        raise ValueError(f"must be 0 (off) to 600 seconds, not {value!r}")
    return number


def _interval(value: Any) -> float:
    number = _number(value)
    if not 0.01 <= number <= 60:
        raise ValueError(f"must be 0.01 to 60 seconds, not {value!r}")
    return number


def _port(value: Any) -> int:
    number = _whole(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"port must be 0-65535, not {value!r}")
    return number


def _workers(value: Any) -> int:
    number = _whole(value)
    if not 1 <= number <= MAX_WORKERS:
        raise ValueError(f"must be 1-{MAX_WORKERS}, not {value!r}")
    return number


def _speed(value: Any) -> float:
    number = _number(value)
    if not 0 < number <= 1_000_000:
        raise ValueError(f"must be more than 0 and at most 1000000, not {value!r}")
    return number


def _version(value: Any) -> str:
    text = _text(value)
    if text not in INSTANCE_VERSIONS:
        raise ValueError(f"{text!r} is not an instance api-version; known: {', '.join(INSTANCE_VERSIONS)}")
    return text


def _server_version(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", text):
        raise ValueError(f"must be four dot-separated numbers like {SERVER_VERSION}, not {text!r}")
    return text


def _url(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"https?://[^/\s?#]+/?", text):
        raise ValueError(f"must be http://HOST[:PORT] or https://HOST[:PORT], not {text!r}")
    return text.rstrip("/")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {text!r}")
        return text
    return parse


def _path(value: Any) -> str:
    text = _text(os.fspath(value) if isinstance(value, os.PathLike) else value)
    if not text:
        raise ValueError("must be a path, not empty")
    return text


def _optional_path(value: Any) -> str | None:
    """A path, or nothing: an empty text means "none" (``--state-dir ''`` persists nothing)."""
    text = _text(os.fspath(value) if isinstance(value, os.PathLike) else value)
    return text or None


def _token(value: Any) -> str:
    text = _text(value)
    if not text or any(c.isspace() for c in text) or not text.isprintable():
        raise ValueError("must be a token of printable characters without spaces")
    return text


def _state_url(value: Any) -> str:
    text = _text(value).strip()
    if text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        return text
    raise ValueError(f"must be sqlite:///PATH or postgresql://USER@HOST[:PORT]/DB, not {text!r}")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _faults(value: Any) -> tuple[Any, ...]:
    """Fault rules: flag text ``PATTERN=SPEC`` (several in a variable, separated by white space) or the
    profile's list of mappings."""
    from .model.faults import FaultRule

    if isinstance(value, str):
        return tuple(FaultRule.from_spec(text) for text in value.split())
    if isinstance(value, FaultRule):
        return (value,)
    if isinstance(value, (list, tuple)):
        rules = []
        for index, item in enumerate(value):
            try:
                if isinstance(item, FaultRule):
                    rules.append(item)
                elif isinstance(item, str):
                    rules.append(FaultRule.from_spec(item))
                else:
                    rules.append(FaultRule.from_mapping(item, lax=True))
            except ProfileError as exc:
                raise ProfileError("", [(f"[{index}]" + (f".{p.where}" if p.where else ""), p.what)
                                        for p in exc.problems]) from None
        return tuple(rules)
    raise ValueError(f"must be a list of faults, not {value!r}")


@dataclass(frozen=True)
class Option:
    """One option: its name in ``Config``, where it can be given, its parser, default and meaning."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    profile_key: str | None = None  # its key in the profile's ``azimds:`` section, if it may be set there
    choices: tuple[str, ...] = ()
    repeatable: bool = False  # several values add up (flags repeat; the variable separates them by spaces)
    switch: bool = False  # a flag that takes no value (its variable: true/false)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("profile", _path, None, "the VM profile, YAML or JSON (a captured IMDS document works); default: the "
           "embedded default VM", "FILE"),
    Option("watch", _flag, False, "reload the profile file when it changes: a valid edit is applied as the "
           "control plane's reload does (POST /v1/reload), an invalid one is reported on stderr and the running "
           "world kept", switch=True),
    Option("watch_interval", _interval, 0.5, "how often --watch looks at the profile file (its inode, size and "
           "modification time)", "SECONDS"),
    Option("host", _text, "127.0.0.1", "address the metadata port listens on", "ADDRESS"),
    Option("port", _port, DEFAULT_PORT, "metadata port; 0 picks a free one", "PORT"),
    Option("add_host_address", _flag, False, "first add --host (e.g. 169.254.169.254) to the loopback interface "
           "when it lacks it, and leave it there: a node agent that pods reach through their node (Linux; needs "
           "CAP_NET_ADMIN; see README 'Kubernetes')", switch=True),
    Option("rate_limit", _rate, 5.0, "requests per second per VM (per source address for one VM) on "
           "/metadata, identity apart; 0 for no limit", "N", "rateLimit"),
    Option("identity_rate_limit", _rate, 20.0, "identity requests (/metadata/identity/*) per second per VM; 0 "
           "for no limit", "N", "identityRateLimit"),
    Option("identity_concurrency", _count, 5, "identity requests in flight per VM; 0 for no limit", "N",
           "identityConcurrency"),
    Option("newest_version", _version, None, "behave as a service whose newest api-version is V (to test a "
           "client's fallback)", "V", "newestVersion"),
    Option("server_version", _server_version, SERVER_VERSION, "the build in the Server header (IMDS/...)",
           "BUILD", "serverVersion"),
    Option("events_first_call_delay", _delay, 0.0, "answer each VM's first scheduled-events request (and its first "
           "after 24 h without one) SECONDS late, as Azure may take up to 120 while it enables the service",
           "SECONDS", "eventsFirstCallDelay"),
    Option("scale_set_tags", _choice("reboot", "immediate"), "reboot", "when a scale-set instance shows tags "
           "the control plane changed: at its next reboot (as Azure) or at once", "WHEN", "scaleSetTags",
           choices=("reboot", "immediate")),
    Option("fault", _faults, (), "inject a fault, e.g. '/metadata/instance*=status:410,first-seconds:70' "
           "(see README 'Faults'); added to the profile's", "PATTERN=SPEC", "faults", repeatable=True),
    Option("clock", _choice("real", "manual"), "real", "real time, or manual: time moves only when the "
           "control plane says", "MODE", choices=("real", "manual")),
    Option("clock_speed", _speed, 1.0, "run the clock X times as fast, e.g. 60 for an hour a minute", "X"),
    Option("scenario", _path, None, "events to publish at offsets from start (YAML/JSON; see README "
           "'Scenarios'), after the profile's own", "FILE"),
    Option("public_url", _url, None, "how clients reach the metadata port, for the attested certificate's AIA "
           "URL and the token issuer's jwks_uri; default: the listening URL", "URL", "publicUrl"),
    Option("state_dir", _optional_path, None, "where state, keys and the control token live; '' keeps nothing "
           "(serve's default: $XDG_STATE_HOME/azimds, else ~/.local/state/azimds, for the default port; "
           "port-PORT/ inside it for another port; nothing for port 0)", "DIR"),
    Option("control_host", _text, "127.0.0.1", "address the control plane listens on; beyond loopback only with "
           "--control-token", "ADDRESS"),
    Option("control_port", _port, DEFAULT_CONTROL_PORT, "control plane port; 0 picks a free one (the default "
           "when --port is not the default)", "PORT"),
    Option("control_token", _token, None, "the control plane's bearer token; default: generated and written to "
           "STATE_DIR/control-token", "TOKEN"),
    Option("log_format", _choice("none", "json"), "none", "json: one structured line per request on stderr",
           "FORMAT", choices=("none", "json")),
    Option("state", _state_url, None, "where the world is kept: sqlite:///PATH (default: STATE_DIR/state.sqlite) "
           "or postgresql://USER@HOST/DB, shared by every node started with it", "URL"),
    Option("node", _text, None, "this process's name in a shared world's journal (default: HOST:PID)", "NAME"),
    Option("workers", _workers, 1, f"processes answering the metadata port (1-{MAX_WORKERS}); more than 1 runs a "
           "supervisor that restarts them, each source address answered by one of them (see README 'Workers')",
           "N"),
    Option("loop", _choice("auto", "uvloop", "asyncio"), "auto", "the event loop: uvloop when installed (auto), or "
           "asyncio's own", "LOOP", choices=("auto", "uvloop", "asyncio")),
    Option("reset_state", _flag, False, "set the state directory's state aside (into STATE_DIR/aside-TIME/) and "
           "start afresh", switch=True),
)

_BY_NAME = {option.name: option for option in OPTIONS}
_BY_PROFILE_KEY = {option.profile_key: option for option in OPTIONS if option.profile_key}


@dataclass(frozen=True)
class Config:
    """Everything the emulator is told, as opposed to what its VM is (that is the profile).

    ``profile`` is a path, or in a test suite a parsed tree (``dict``) or a loaded ``Profile``; None is the
    embedded default VM. ``state_dir`` None keeps nothing on disk. ``control_port`` None runs no control plane.
    """

    profile: Any = None
    watch: bool = False
    watch_interval: float = 0.5
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    add_host_address: bool = False
    rate_limit: float = 5.0
    identity_rate_limit: float = 20.0
    identity_concurrency: int = 5
    newest_version: str | None = None
    server_version: str = SERVER_VERSION
    events_first_call_delay: float = 0.0
    scale_set_tags: str = "reboot"
    fault: tuple[Any, ...] = ()  # model.faults.FaultRule: the profile's, then the environment's and the flags'
    clock: str = "real"
    clock_speed: float = 1.0
    scenario: str | None = None
    public_url: str | None = None
    state_dir: str | None = None
    control_host: str = "127.0.0.1"
    control_port: int | None = DEFAULT_CONTROL_PORT
    control_token: str | None = None
    log_format: str = "none"
    state: str | None = None
    node: str | None = None
    workers: int = 1
    loop: str = "auto"
    reset_state: bool = False
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)  # option -> where its value came from

    @classmethod
    def build(cls, *, profile_settings: Mapping[str, Any] | None = None, profile_source: str = "profile",
              env: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None,
              defaults: Mapping[str, Any] | None = None) -> Config:
        """Defaults (``defaults`` replacing the table's) < profile ``azimds:`` section < environment < flags.

        ``flags`` are raw values by option name (text from the command line, or typed values from
        ``Emulator(...)``); None means "not given". Raises ProfileError naming every bad value and its source
        (the flag, the variable, or ``azimds.<key>`` in the profile).
        """
        values: dict[str, Any] = {option.name: option.default for option in OPTIONS}
        sources: dict[str, str] = {}
        problems: list[tuple[str, str]] = []
        profile_problems: list[tuple[str, str]] = []
        for name, value in (defaults or {}).items():
            values[name] = value
        for key, value in (profile_settings or {}).items():
            option = _BY_PROFILE_KEY.get(key)
            if option is None:
                profile_problems.append((f"azimds.{key}", "unknown field; known: "
                                         + ", ".join(sorted(_BY_PROFILE_KEY))))
                continue
            _take(option, value, f"azimds.{key}", values, sources, profile_problems)
        for option in OPTIONS:
            text = (env or {}).get(option.env)
            if text is not None:
                _take(option, text, option.env, values, sources, problems)
        for name, value in (flags or {}).items():
            option = _BY_NAME.get(name)
            if option is None:
                raise UsageError(f"unknown option {name!r}")
            if value is None or (option.repeatable and not value):
                continue
            if option.repeatable and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                value = " ".join(value)
            _take(option, value, option.flag, values, sources, problems)
        if "control_port" not in sources and values["port"] != DEFAULT_PORT and "control_port" not in (defaults or {}):
            values["control_port"] = 0  # another emulator beside the default one: its control plane on a free port
        if not _loopback(values["control_host"]) and values["control_token"] is None:
            problems.append((sources.get("control_host", "--control-host"),
                             f"the control plane on {values['control_host']} would be reachable from other "
                             "machines over plain HTTP; give --control-token (a secret) to allow it"))
        if values["watch"]:
            problems.extend(_watch_problems(values, sources.get("watch", "--watch")))
        if profile_problems:
            raise ProfileError(profile_source, profile_problems + problems)
        if problems:
            raise ProfileError("", problems)
        return cls(**{name: values[name] for name in _BY_NAME}, sources=sources)

    @property
    def shared(self) -> bool:
        """Whether other processes share the world's store (a PostgreSQL engine)."""
        return bool(self.state and self.state.startswith(("postgresql://", "postgres://")))

    @property
    def control_public(self) -> bool:
        """Whether the control plane listens beyond this machine (serve warns about it)."""
        return self.control_port is not None and not _loopback(self.control_host)

    def with_(self, **changes: Any) -> Config:
        """A copy with some values replaced (already typed; not validated again)."""
        return replace(self, **changes)


def _watch_problems(values: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """Why ``--watch`` cannot be had with these values: it needs a file, and a world of one process (the control
    plane's reload is refused for a shared one, and the watch reloads as it does)."""
    if not isinstance(values["profile"], (str, os.PathLike)):
        return [(where, "needs a profile file to watch (--profile FILE)")]
    if values["workers"] > 1 or str(values["state"] or "").startswith(("postgresql://", "postgres://")):
        return [(where, "a world shared by several processes (--workers, --state postgresql://…) takes a new "
                        "profile only when they restart with it")]
    return []


def _take(option: Option, value: Any, where: str, values: dict[str, Any], sources: dict[str, str],
          problems: list[tuple[str, str]]) -> None:
    try:
        parsed = option.parse(value)
    except ProfileError as exc:  # a fault rule names its own problems
        problems.extend((where + (p.where if p.where.startswith("[") else f".{p.where}" if p.where else ""), p.what)
                        for p in exc.problems)
        return
    except ValueError as exc:
        problems.append((where, str(exc)))
        return
    if option.repeatable:
        parsed = tuple(values.get(option.name) or ()) + tuple(parsed)
    values[option.name] = parsed
    sources[option.name] = where


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_state_dir(port: int) -> str | None:
    """``serve``'s state directory when none is given: the default one for the default port, a directory of
    its own beside it for another port (so that two emulators on two ports never share one), none for port 0
    (a port chosen afresh each time has no state to come back to)."""
    if port == DEFAULT_PORT:
        return default_state_dir()
    return None if port == 0 else os.path.join(default_state_dir(), f"port-{port}")


def env_options(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``AZIMDS_*`` variables that name options (others, such as AZIMDS_ENDPOINT, are the client's)."""
    environ = os.environ if environ is None else environ
    return {option.env: environ[option.env] for option in OPTIONS if option.env in environ}


def markdown_table(options: Iterable[Option] = OPTIONS) -> str:
    """The README's table of options (``python -m azimds.emulator.config`` prints it)."""
    rows = ["| Flag | Variable | Profile (`azimds:`) | Default | Meaning |", "|---|---|---|---|---|"]
    for option in options:
        default = "—" if option.default in (None, (), False) else f"`{option.default}`"
        key = f"`{option.profile_key}`" if option.profile_key else "—"
        flag = option.flag if option.switch else f"{option.flag} {option.metavar}"
        rows.append(f"| `{flag}` | `{option.env}` | {key} | {default} | {option.help} |")
    return "\n".join(rows)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Config) if f.name != "sources")


if __name__ == "__main__":
    print(markdown_table())
