"""The ``azimds`` command: argparse only, each command importing what it needs when it runs.

``serve`` runs the emulator and ``run`` runs a command beside one in a network namespace; ``get``, ``tags``,
``versions``, ``events`` and ``dump`` read IMDS through ``azimds.client`` and must start fast (shell scripts
call them), so nothing here imports the emulator's dependencies (pydantic, PyYAML, httptools) for them.
``ctl`` has a parser of its own in ``azimds.ctl``, built only when it runs: its twenty subcommands would
otherwise add 10 ms to every start. Errors are one line on stderr; exit codes are 0 success, 1 not found,
2 usage or connection failure.
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # typing costs 5 ms at import, and this module loads on every call
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    from .client import Client

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2

EXIT_CODES = "exit codes: 0 success, 1 not found (no such tag or path), 2 usage error or no answer from IMDS"
TAG_PREFIX = "TAG_"
REDACT_HELP = (
    "blank userData, customData, publicKeys[].keyData, disk encryption secretUrl/keyUrl and every storage "
    "uri; replace subscriptionId, vmId and placementGroupId with the zero GUID; replace the resource group, "
    "VM, computer, admin user, scale set and disk names with placeholders wherever one is a whole value, and "
    "every subscription, resource group and resource name inside resource IDs; map public IP addresses "
    "(NICs and load balancer) to documentation addresses (203.0.113.0/24, 2001:db8::/32), the same address "
    "to the same placeholder. Tags, private and MAC addresses, sizes, image and location are kept: review "
    "tags before sharing"
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more, not {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _prefix(text: str) -> str:
    import re

    if text and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"a prefix is letters, digits and '_', not starting with a digit: {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as every other error is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="azimds", description="Azure Instance Metadata Service emulator and client.", epilog=EXIT_CODES)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_serve(commands)

    client = _Parser(add_help=False)
    client.add_argument("--endpoint", metavar="URL",
                        help="IMDS base URL (default: $AZIMDS_ENDPOINT, else http://169.254.169.254); "
                             "proxy environment variables are never used")
    client.add_argument("--deadline", type=_seconds, metavar="SECONDS",
                        help="give up after this long, retries included (default: 90)")

    get = _command(commands, "get", client, "read any IMDS path",
                   "Print /metadata/PATH: JSON as served (compact, keys sorted), or text with --text. "
                   "404, 410, 429, 5xx and lost connections are retried as Microsoft advises, up to --deadline.")
    get.add_argument("path", nargs="?", default="instance", metavar="PATH",
                     help="path below /metadata, e.g. instance/compute/vmId (default: instance)")
    get.add_argument("--text", action="store_true", help="format=text: needed for leaves such as vmId")
    get.add_argument("--api-version", metavar="V", help="send this api-version (default: 2021-02-01, or the "
                                                        "host's newest if it does not know that)")
    get.add_argument("--pretty", action="store_true", help="indent JSON")
    get.set_defaults(action=_get)

    tags = _command(commands, "tags", client, "print the VM's tags",
                    "Print one tag's value (with KEY) or all tags. Tags come from tagsList, or from the "
                    "'tags' string on hosts too old for tagsList (a ';' inside a value is then ambiguous). "
                    "KEY matches exactly, else case-insensitively as Azure tag names do. For env and shell, "
                    f"a tag name becomes PREFIX + the name upper-cased with every character outside "
                    f"[A-Za-z0-9_] turned into '_' (prefix {TAG_PREFIX!r} by default, so that no tag can set "
                    "PATH, LD_PRELOAD or IFS); a name that would repeat an earlier one is skipped with a "
                    "warning. Values are quoted with shlex.quote for shell; env writes NAME=value verbatim "
                    "and skips values with a line break.")
    tags.add_argument("key", nargs="?", metavar="KEY", help="the tag to print (default: all)")
    tags.add_argument("--format", choices=("plain", "json", "env", "shell"), default="plain",
                      help="plain: the value (KEY) or name=value lines; json: a JSON string or object; "
                           "env: NAME=value lines; shell: export NAME='value' lines for eval")
    tags.add_argument("--prefix", type=_prefix, default=TAG_PREFIX, metavar="PREFIX",
                      help=f"variable name prefix for env and shell (default: {TAG_PREFIX}); '' for none")
    tags.set_defaults(action=_tags)

    versions = _command(commands, "versions", client, "list the api-versions IMDS accepts",
                        "Print /metadata/versions, one api-version per line, as the host lists them.")
    versions.set_defaults(action=_versions)

    dump_description = ("Capture this VM (or --endpoint) as an emulator profile (JSON) that "
                            "'azimds serve --profile FILE' serves back identically: /metadata/instance at "
                            "the newest api-version the host accepts, /metadata/loadbalancer if present, "
                            "and that newest version. Identity tokens, attested documents and scheduled "
                            "events are not captured.")
    dump = _command(commands, "dump", client, "capture this VM as an emulator profile", dump_description)
    dump.add_argument("--redact", action="store_true", help=REDACT_HELP)
    dump.add_argument("--output", "-o", metavar="FILE", help="write the profile here (default: stdout)")
    dump.set_defaults(action=_dump)

    _add_events(commands, client)
    _add_identity(commands, client)
    _add_run(commands)
    commands.add_parser("ctl", add_help=False, help="steer a running emulator through its control plane "
                                                    "(see azimds ctl --help)")
    return parser


def _add_events(commands: Any, client: argparse.ArgumentParser) -> None:
    events = _command(
        commands, "events", client, "read, watch and approve scheduled events",
        "Print the scheduled events document (/metadata/scheduledevents, api-version 2020-07-01) as JSON. An "
        "event touches this VM when its Resources name it: compute.name, or {vmScaleSetName}_{instanceId} "
        "for a scale set instance (case ignored); events of other VMs in the same availability set or scale "
        "set are listed too. Approving an event lets it start now instead of at its NotBefore.")
    events.add_argument("--watch", action="store_true",
                        help="poll once a second and print the document (one line) each time its "
                             "DocumentIncarnation changes, the first one included, until interrupted")
    approve = events.add_mutually_exclusive_group()
    approve.add_argument("--approve", nargs="+", metavar="ID",
                         help="approve these events and print their ids (not with --watch)")
    approve.add_argument("--approve-all", action="store_true",
                         help="approve every Scheduled event that touches this VM and print their ids; with "
                              "--watch, as they appear (approvals are then reported on stderr)")
    events.set_defaults(action=_events)


def _add_run(commands: Any) -> None:
    description = ("Run COMMAND in a private network namespace where http://169.254.169.254 is an emulator "
                   "(port 80): the docs' curl lines and unmodified SDKs work as on a VM, and the host's network "
                   "is not touched. Needs unshare (util-linux) and ip (iproute2), and root or unprivileged "
                   "user namespaces. Exits with COMMAND's exit code (128+N if a signal N ended it).")
    epilog = "exit codes: COMMAND's, or 2 when the namespace or the emulator cannot be set up"
    for name, run in (("run", _run), ("_run-inside", _run_inside)):
        kwargs = {"help": "run a command where 169.254.169.254 is the emulator"} if name == "run" else {}
        command = commands.add_parser(name, description=description, epilog=epilog, **kwargs)
        command.add_argument("--profile", metavar="FILE", help="VM profile (default: the embedded default VM)")
        command.add_argument("--state-dir", metavar="DIR", default=None,
                             help="persist the emulator's state here (default: nothing persisted)")
        command.add_argument("--rate-limit", type=_rate, metavar="N", default=None,
                             help="requests per second per source address, 0 for no limit (default: 5)")
        command.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                             help="the command and its arguments")
        command.set_defaults(run=run)


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the emulator", description="Serve /metadata for the VM a profile describes "
        "(the embedded default VM without --profile). Prints 'azimds: serving URL' when ready.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=None, help="port (default: 8169; 0 picks a free one)")
    serve.add_argument("--profile", metavar="FILE", help="VM profile, YAML or JSON (a captured IMDS document works)")
    serve.add_argument("--rate-limit", type=_rate, metavar="N", default=None,
                       help="requests per second per source address, 0 for no limit (default: 5)")
    serve.add_argument("--newest-version", metavar="V", default=None,
                       help="behave as a service whose newest api-version is V")
    serve.add_argument("--fault", action="append", default=[], metavar="PATTERN=SPEC",
                       help="inject a fault, e.g. '/metadata/instance*=status:410,first-seconds:70' "
                            "(repeatable; see README 'Faults')")
    serve.add_argument("--clock", choices=("real", "manual"), default="real",
                       help="real time, or manual: time moves only when the control plane says (default: real)")
    serve.add_argument("--clock-speed", type=_rate, default=1.0, metavar="X",
                       help="run the clock X times as fast, e.g. 60 for an hour a minute (default: 1)")
    serve.add_argument("--scenario", metavar="FILE", default=None,
                       help="events to publish at offsets from start (YAML/JSON; see README 'Scenarios')")
    serve.add_argument("--public-url", metavar="URL", default=None,
                       help="how clients reach this emulator, for the attested certificate's AIA URL and the "
                            "token issuer's jwks_uri (default: the listening URL; needed with --host 0.0.0.0)")
    serve.add_argument("--identity-rate-limit", type=_rate, metavar="N", default=None,
                       help="identity requests per second per source address, 0 for no limit (default: 20)")
    serve.add_argument("--identity-concurrency", type=int, metavar="N", default=None,
                       help="identity requests in flight per source address, 0 for no limit (default: 5)")
    serve.add_argument("--state-dir", metavar="DIR", default=None,
                       help="where state, keys and the control token live (default: ~/.local/state/azimds)")
    serve.add_argument("--control-host", default=None,
                       help="control plane address (default: 127.0.0.1, whatever --host is)")
    serve.add_argument("--control-port", type=_port, default=8170, help="control plane port (default: 8170; 0 picks one)")
    serve.add_argument("--control-token", default=None, metavar="TOKEN",
                       help="the control plane's bearer token (default: generated, written to STATE_DIR/control-token)")
    serve.add_argument("--log-format", choices=("none", "json"), default="none",
                       help="json: one structured line per request on stderr")
    serve.set_defaults(run=_serve)


def _command(commands: Any, name: str, parent: argparse.ArgumentParser, summary: str,
             description: str) -> argparse.ArgumentParser:
    command = commands.add_parser(name, parents=[parent], help=summary, description=description,
                                  epilog=EXIT_CODES)
    command.set_defaults(run=_run_client)
    return command


# -- identity, attested, ca ---------------------------------------------------------------------------------

EXIT_UNVERIFIED = 3


def _add_identity(commands: Any, client: argparse.ArgumentParser) -> None:
    token = _command(commands, "token", client, "print a managed-identity access token",
                     "Print an access token for RESOURCE from the VM's managed identity (the system-assigned "
                     "one, or the user-assigned one a selector picks).")
    token.add_argument("--resource", default="https://management.azure.com/", metavar="URI",
                       help="the audience (default: https://management.azure.com/)")
    selector = token.add_mutually_exclusive_group()
    selector.add_argument("--client-id", metavar="ID", help="a user-assigned identity's client id")
    selector.add_argument("--object-id", metavar="ID", help="a user-assigned identity's object (principal) id")
    selector.add_argument("--resource-id", metavar="ID", help="a user-assigned identity's resource id")
    token.add_argument("--bypass-cache", action="store_true", help="ask for a new token")
    token.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    token.set_defaults(action=_token)

    attested = _command(commands, "attested", client, "print (and verify) the attested document",
                        "Print /metadata/attested/document. With --verify, check its signature, certificate "
                        "chain (to --trust-root), name, window and nonce, and print the signed content; "
                        "exit 3 when it fails, saying why.")
    attested.add_argument("--nonce", metavar="N", help="1-32 letters or digits, echoed in the signed content")
    attested.add_argument("--verify", action="store_true", help="verify and print the signed content")
    attested.add_argument("--trust-root", action="append", default=[], metavar="PEM",
                          help="a root certificate to chain to (repeatable; e.g. from 'azimds ca export')")
    attested.add_argument("--cloud", default="AzurePublicCloud", metavar="NAME",
                          help="the cloud whose certificate name to expect (default: AzurePublicCloud)")
    attested.set_defaults(action=_attested)

    ca = commands.add_parser("ca", help="the emulator's certificate authority",
                             description="Export the emulator's root (and intermediate) certificate as PEM: "
                                         "what clients trust to verify its attested documents.")
    ca_commands = ca.add_subparsers(dest="ca_command", metavar="COMMAND")
    ca_commands.required = True
    export = ca_commands.add_parser("export", help="write the root certificate (PEM)",
                                    description="Write the root certificate of the CA in the state directory "
                                                "(made there if absent, as 'serve' would).")
    export.add_argument("--state-dir", metavar="DIR", help="the emulator's state directory "
                                                            "(default: ~/.local/state/azimds)")
    export.add_argument("--intermediate", action="store_true", help="the intermediate too, after the root")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=_ca_export)


def _token(client: Client, args: argparse.Namespace) -> int:
    import json

    answer = client.token(args.resource, client_id=args.client_id, object_id=args.object_id,
                          resource_id=args.resource_id, bypass_cache=args.bypass_cache)
    _write(json.dumps(answer) if args.json else answer["access_token"])
    return EXIT_OK


def _attested(client: Client, args: argparse.Namespace) -> int:
    import json

    document = client.attested(args.nonce)
    if not args.verify:
        _write(json.dumps(document))
        return EXIT_OK
    if not args.trust_root:
        raise ValueError("--verify needs --trust-root PEM (e.g. from 'azimds ca export')")
    from .attested import AttestationError, verify_attested

    try:
        verified = verify_attested(document, args.trust_root, nonce=args.nonce, cloud=args.cloud)
    except AttestationError as exc:
        _error(f"attestation failed ({exc.reason}): {exc.message}")
        return EXIT_UNVERIFIED
    _write(verified.signed_bytes.decode("utf-8"))
    return EXIT_OK


def _ca_export(args: argparse.Namespace) -> int:
    from .pki import export_ca
    from .store import default_state_dir

    try:
        text = export_ca(args.state_dir or default_state_dir(), intermediate=args.intermediate)
        if args.output:
            with open(args.output, "w", encoding="ascii") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
    except OSError as exc:
        _error(f"{exc.filename or 'state directory'}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


# -- serve -------------------------------------------------------------------------------------------------

def _serve(args: argparse.Namespace) -> int:
    from .emulator import DEFAULT_PORT, EmulatorConfig, serve
    from .store import default_state_dir
    from .faults import parse_fault
    from .profile import ProfileError

    try:
        faults = tuple(parse_fault(text) for text in args.fault)
    except ValueError as exc:
        _error(f"--fault: {exc}")
        return EXIT_USAGE
    config = EmulatorConfig(profile=args.profile, host=args.host,
                            port=DEFAULT_PORT if args.port is None else args.port,
                            rate_limit=args.rate_limit, newest_version=args.newest_version, faults=faults,
                            clock=args.clock, clock_speed=args.clock_speed,
                            state_dir=args.state_dir or default_state_dir(),
                            control_host=args.control_host or "127.0.0.1", control_port=args.control_port,
                            control_token=args.control_token, log_format=args.log_format,
                            scenario=args.scenario, public_url=args.public_url,
                            identity_rate_limit=args.identity_rate_limit,
                            identity_concurrency=args.identity_concurrency)
    try:
        return serve(config, ready=lambda line: print(line, flush=True))
    except ProfileError as exc:
        _error(f"bad profile\n{exc}")
    except ValueError as exc:
        _error(str(exc))
    except OSError as exc:
        _error(f"cannot listen on {args.host}:{config.port}: {exc.strerror or exc}")
    return EXIT_USAGE


# -- run -------------------------------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    """Re-run this CLI as ``_run-inside`` in a new network namespace, passing the options on."""
    from . import netns

    options = []
    for flag, value in (("--profile", args.profile), ("--state-dir", args.state_dir),
                        ("--rate-limit", args.rate_limit)):
        if value is not None:
            options += [flag, str(value)]
    try:
        return _exit_code(netns.run(_command_line(args), options))
    except netns.NetnsError as exc:
        _error(str(exc))
        return EXIT_USAGE


def _run_inside(args: argparse.Namespace) -> int:
    """In the namespace: serve on 169.254.169.254:80 and run the command (netns.inside)."""
    import subprocess

    from . import netns
    from .profile import ProfileError

    try:
        return _exit_code(netns.inside(_command_line(args), profile=args.profile, state_dir=args.state_dir,
                                       rate_limit=args.rate_limit))
    except ProfileError as exc:
        _error(f"bad profile: {'; '.join(str(exc).splitlines())}")
    except subprocess.CalledProcessError as exc:
        _error(f"cannot set up the namespace's loopback: {' '.join(exc.cmd)}: "
               f"{(exc.stderr or b'').decode(errors='replace').strip() or f'exit {exc.returncode}'}")
    except (OSError, ValueError) as exc:
        _error(f"cannot start the emulator: {exc}")
    return EXIT_USAGE


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command after ``--`` (argparse keeps that separator in front of a REMAINDER)."""
    command = list(args.command)
    return command[1:] if command[:1] == ["--"] else command


def _exit_code(code: int) -> int:
    """A child's exit code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - code if code < 0 else code


# -- client commands ---------------------------------------------------------------------------------------

def _run_client(args: argparse.Namespace) -> int:
    """Make the client, run the command, and turn every failure into one line and an exit code."""
    from .client import DEFAULT_DEADLINE, Client, ImdsError, NotFound

    try:
        client = Client(args.endpoint, deadline=args.deadline or DEFAULT_DEADLINE)
        return args.action(client, args)
    except NotFound as exc:
        _error(str(exc))
        return EXIT_NOT_FOUND
    except (ImdsError, ValueError) as exc:
        _error(str(exc))
    except OSError as exc:
        _error(f"{exc.filename or 'output'}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - a user gets one line, never a traceback
        _error(f"unexpected failure: {type(exc).__name__}: {exc}")
    return EXIT_USAGE


def _get(client: Client, args: argparse.Namespace) -> int:
    from .client import ImdsError

    try:
        value = client.get(args.path, text=args.text, api_version=args.api_version)
    except ImdsError as exc:
        if exc.status == 400 and not args.text and "newest-versions" not in exc.body:
            raise ImdsError(f"{exc} (a leaf such as vmId needs --text)", status=400, body=exc.body) from None
        raise
    if args.text:
        _write(value)
    else:
        _write(_json(value, pretty=args.pretty))
    return EXIT_OK


def _versions(client: Client, args: argparse.Namespace) -> int:
    _write("\n".join(client.versions()))
    return EXIT_OK


def _dump(client: Client, args: argparse.Namespace) -> int:
    from .client import capture, redact

    profile = capture(client)
    text = _json(redact(profile) if args.redact else profile, pretty=True)
    if args.output is None:
        _write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    return EXIT_OK


def _events(client: Client, args: argparse.Namespace) -> int:
    """Print the document, approve, or watch (and approve as events appear)."""
    if args.watch:
        if args.approve:
            _error("--approve ID does not combine with --watch; use --approve-all")
            return EXIT_USAGE
        return _watch(client, args.approve_all)
    if args.approve:
        _write("\n".join(client.approve(args.approve)))
    elif args.approve_all:
        _write("\n".join(_approve_mine(client, client.events())))
    else:
        _write(_json(client.events()))
    return EXIT_OK


def _approve_mine(client: Client, doc: dict[str, Any]) -> list[str]:
    """Approve the Scheduled events of ``doc`` that touch this VM; their ids (none: nothing sent)."""
    ids = [event["EventId"] for event in doc["Events"]
           if event.get("EventStatus") == "Scheduled" and client.touches(event)]
    return client.approve(ids) if ids else []


def _watch(client: Client, approve: bool) -> int:
    """Print each new document on its own line, flushed, until Ctrl-C or a closed pipe (both exit 0).

    An approval refused because the event went away meanwhile is a warning: the next document shows why.
    """
    from .client import ImdsError

    try:
        for doc in client.watch_events():
            print(_json(doc), flush=True)
            if not approve:
                continue
            try:
                for event_id in _approve_mine(client, doc):
                    _note(f"approved {event_id}")
            except ImdsError as exc:
                if exc.status != 400:
                    raise
                _warn(str(exc))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _drop_stdout()
    return EXIT_OK


def _drop_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail on the closed pipe."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _tags(client: Client, args: argparse.Namespace) -> int:
    tags = client.tags()
    if args.key is not None:
        name = _find_tag(tags, args.key)
        if name is None:
            known = ", ".join(repr(n) for n in tags) if tags else "none"
            _error(f"no tag {args.key!r} on this VM (its tags: {known})")
            return EXIT_NOT_FOUND
        if args.format == "plain":
            _write(tags[name])
            return EXIT_OK
        if args.format == "json":
            _write(_json(tags[name]))
            return EXIT_OK
        tags = {name: tags[name]}
    _write(_FORMATS[args.format](tags, args.prefix))
    return EXIT_OK


def _find_tag(tags: dict[str, str], key: str) -> str | None:
    """The tag name ``key`` means: itself, else the one name equal to it ignoring case."""
    if key in tags:
        return key
    folded = [name for name in tags if name.casefold() == key.casefold()]
    return folded[0] if len(folded) == 1 else None


def _plain(tags: dict[str, str], prefix: str) -> str:
    return "\n".join(f"{name}={value}" for name, value in tags.items())


def _json_tags(tags: dict[str, str], prefix: str) -> str:
    return _json(tags)


def _env(tags: dict[str, str], prefix: str) -> str:
    lines = []
    for name, variable, value in _variables(tags, prefix):
        if "\n" in value or "\r" in value:
            _warn(f"tag {name!r}: an env file cannot hold a line break; skipped")
            continue
        lines.append(f"{variable}={value}")
    return "\n".join(lines)


def _shell(tags: dict[str, str], prefix: str) -> str:
    import shlex

    return "\n".join(f"export {variable}={shlex.quote(value)}" for _, variable, value in _variables(tags, prefix))


_FORMATS: dict[str, Callable[[dict[str, str], str], str]] = {
    "plain": _plain, "json": _json_tags, "env": _env, "shell": _shell}


def _variables(tags: dict[str, str], prefix: str) -> list[tuple[str, str, str]]:
    """(tag name, variable name, value) for each tag; a name that repeats an earlier one is skipped."""
    taken: dict[str, str] = {}
    out = []
    for name, value in tags.items():
        variable = prefix + "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name).upper()
        if variable[:1].isdigit():
            variable = "_" + variable
        if variable in taken:
            _warn(f"tags {taken[variable]!r} and {name!r} both become {variable}; kept {taken[variable]!r}")
            continue
        taken[variable] = name
        out.append((name, variable, value))
    return out


# -- output ------------------------------------------------------------------------------------------------

def _json(value: Any, *, pretty: bool = False) -> str:
    import json

    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _write(text: str) -> None:
    """Print ``text`` and a newline; nothing at all for an empty text."""
    if text:
        sys.stdout.write(text + "\n")


def _error(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"azimds: warning: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["ctl"]:
            from .ctl import main as ctl

            return ctl(argv[1:])
        args = build_parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
