"""The IMDS commands: ``get``, ``tags``, ``versions``, ``dump``, ``events``, ``token`` and ``attested``.

They read IMDS through ``azimds.client`` and must start fast (shell scripts call them), so nothing here
imports the emulator or any third-party module; ``attested --verify`` loads the verifier when it runs.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import AttestationError, UsageError
from ._common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNVERIFIED,
    EXIT_USAGE,
    Parser,
    drop_stdout,
    error,
    json_text,
    note,
    seconds,
    warn,
    write,
)

TYPE_CHECKING = False  # typing costs 5 ms at import, and this module loads on every call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..client import Client

__all__ = ["COMMANDS", "add_commands"]

#: The commands this module adds, and so handles.
COMMANDS = ("get", "tags", "versions", "dump", "events", "token", "attested")

EXIT_CODES = "exit codes: 0 success, 1 not found (no such tag or path), 2 usage error or no answer from IMDS"
TAG_PREFIX = "TAG_"
REDACT_HELP = (
    "blank userData, customData, publicKeys[].keyData, disk encryption secretUrl/keyUrl and every storage "
    "uri; replace subscriptionId, vmId and placementGroupId with the zero GUID; replace the resource group, "
    "VM, computer, admin user, scale set and disk names with placeholders wherever one is a whole value or a "
    "part of a public key's path, and "
    "every subscription, resource group and resource name inside resource IDs; map public IP addresses "
    "(NICs and load balancer) to documentation addresses (203.0.113.0/24, 2001:db8::/32), the same address "
    "to the same placeholder. Tags, private and MAC addresses, sizes, image and location are kept: review "
    "tags before sharing"
)


def _prefix(text: str) -> str:
    import re

    if text and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"a prefix is letters, digits and '_', not starting with a digit: {text!r}")
    return text


def add_commands(commands: Any) -> None:
    """Add the IMDS commands to ``azimds``'s subcommands."""
    client = Parser(add_help=False)
    client.add_argument("--endpoint", metavar="URL",
                        help="IMDS base URL (default: $AZIMDS_ENDPOINT, else http://169.254.169.254); "
                             "proxy environment variables are never used")
    client.add_argument("--deadline", type=seconds, metavar="SECONDS",
                        help="give up after this long, retries included (default: 90)")
    client.add_argument("-v", "--verbose", action="store_true",
                        help="print each attempt and each wait on stderr (without it, a terminal is told once, "
                             f"after {NOTICE_AFTER:.0f} s, that IMDS is not answering and why)")

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



def _command(commands: Any, name: str, parent: argparse.ArgumentParser, summary: str,
             description: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, parents=[parent], help=summary,
                                                           description=description, epilog=EXIT_CODES)
    command.set_defaults(run=_run_client)
    return command


# -- identity, attested, ca ---------------------------------------------------------------------------------


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


def _token(client: Client, args: argparse.Namespace) -> int:
    import json

    answer = client.token(args.resource, client_id=args.client_id, object_id=args.object_id,
                          resource_id=args.resource_id, bypass_cache=args.bypass_cache)
    write(json.dumps(answer) if args.json else answer["access_token"])
    return EXIT_OK


def _attested(client: Client, args: argparse.Namespace) -> int:
    import json

    document = client.attested(args.nonce)
    if not args.verify:
        write(json.dumps(document))
        return EXIT_OK
    if not args.trust_root:
        raise UsageError("--verify needs --trust-root PEM (e.g. from 'azimds ca export')")
    from ..client import verify_attested

    try:
        verified = verify_attested(document, args.trust_root, nonce=args.nonce, cloud=args.cloud)
    except AttestationError as exc:
        error(f"attestation failed ({exc.reason}): {exc.message}")
        return EXIT_UNVERIFIED
    write(verified.signed_bytes.decode("utf-8"))
    return EXIT_OK



def _run_client(args: argparse.Namespace) -> int:
    """Make the client and run the command (``run`` turns every failure into one line and an exit code)."""
    from ..client import DEFAULT_DEADLINE, Client

    reporter = _Reporter(args.verbose, sys.stderr.isatty())
    client = Client(args.endpoint, deadline=args.deadline or DEFAULT_DEADLINE, trace=reporter)
    try:
        code: int = args.action(client, args)
    finally:
        reporter.stop()
    return code


#: Seconds of failed attempts after which a terminal is told, once, that azimds is still retrying.
NOTICE_AFTER = 3.0


class _Reporter:
    """Hears of every attempt and wait: prints each with --verbose; else, on a terminal, one line once the
    retries have lasted ``NOTICE_AFTER`` seconds, saying why (so that a user off Azure is not left waiting
    in silence for the deadline)."""

    def __init__(self, verbose: bool, terminal: bool) -> None:
        self.verbose, self.terminal = verbose, terminal
        self.last = ""
        self._timer: Any = None
        self._done = False

    def __call__(self, line: str) -> None:
        if self.verbose:
            note(line)
            return
        if line.startswith("attempt "):
            return
        self.last = line
        if self.terminal and self._timer is None and not self._done:
            import threading

            self._timer = threading.Timer(NOTICE_AFTER, self._notice)
            self._timer.daemon = True
            self._timer.start()

    def _notice(self) -> None:
        if not self._done:
            note(f"still trying: {self.last} (-v shows each attempt; Ctrl-C stops)")

    def stop(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()


def _get(client: Client, args: argparse.Namespace) -> int:
    from ..client import ImdsError

    try:
        value = client.get(args.path, text=args.text, api_version=args.api_version)
    except ImdsError as exc:
        if exc.status == 400 and not args.text and "newest-versions" not in exc.body:
            raise ImdsError(f"{exc} (a leaf such as vmId needs --text)", status=400, body=exc.body) from None
        raise
    if args.text:
        write(value)
    else:
        write(json_text(value, pretty=args.pretty))
    return EXIT_OK


def _versions(client: Client, args: argparse.Namespace) -> int:
    write("\n".join(client.versions()))
    return EXIT_OK


def _dump(client: Client, args: argparse.Namespace) -> int:
    from ..client import capture, redact

    profile = capture(client)
    text = json_text(redact(profile) if args.redact else profile, pretty=True)
    if args.output is None:
        write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    return EXIT_OK


def _events(client: Client, args: argparse.Namespace) -> int:
    """Print the document, approve, or watch (and approve as events appear)."""
    if args.watch:
        if args.approve:
            error("--approve ID does not combine with --watch; use --approve-all")
            return EXIT_USAGE
        return _watch(client, args.approve_all)
    if args.approve:
        write("\n".join(client.approve(args.approve)))
    elif args.approve_all:
        write("\n".join(_approve_mine(client, client.events())))
    else:
        write(json_text(client.events()))
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
    from ..client import ImdsError

    try:
        for doc in client.watch_events():
            print(json_text(doc), flush=True)
            if not approve:
                continue
            try:
                for event_id in _approve_mine(client, doc):
                    note(f"approved {event_id}")
            except ImdsError as exc:
                if exc.status != 400:
                    raise
                warn(str(exc))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        drop_stdout()
    return EXIT_OK



def _tags(client: Client, args: argparse.Namespace) -> int:
    tags = client.tags()
    if args.key is not None:
        name = _find_tag(tags, args.key)
        if name is None:
            known = ", ".join(repr(n) for n in tags) if tags else "none"
            error(f"no tag {args.key!r} on this VM (its tags: {known})")
            return EXIT_NOT_FOUND
        if args.format == "plain":
            write(tags[name])
            return EXIT_OK
        if args.format == "json":
            write(json_text(tags[name]))
            return EXIT_OK
        tags = {name: tags[name]}
    write(_FORMATS[args.format](tags, args.prefix))
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
    return json_text(tags)


def _env(tags: dict[str, str], prefix: str) -> str:
    lines = []
    for name, variable, value in _variables(tags, prefix):
        if "\n" in value or "\r" in value:
            warn(f"tag {name!r}: an env file cannot hold a line break; skipped")
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
            warn(f"tags {taken[variable]!r} and {name!r} both become {variable}; kept {taken[variable]!r}")
            continue
        taken[variable] = name
        out.append((name, variable, value))
    return out


# -- output ------------------------------------------------------------------------------------------------

