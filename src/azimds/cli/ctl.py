"""``azimds ctl``: every control-plane operation as a command line, for shell users.

The control plane (``azimds.control``) speaks JSON over HTTP and wants ``Authorization: Bearer <token>``.
Each subcommand here is one request: it prints the answer as the control plane gives it (JSON, compact
unless ``--pretty``; metrics as Prometheus text; nothing for 204) and turns a refusal into one line on
stderr, the control plane's ``error`` and ``problems``. Exit codes are the client commands': 1 for 404 (no
such node or event), 2 for any other refusal, a usage error or no answer.

It speaks HTTP through the client's transport (standard library only), and its parser is built only when
``azimds ctl`` runs (``cli.main`` hands it the arguments): its twenty subcommands would otherwise cost every
other command 10 ms at start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC
from urllib.parse import quote, urlencode

from ..azure import EVENT_TYPES
from ..client.transport import Endpoint
from ..emulator.config import default_state_dir
from ..errors import UsageError
from ._common import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Parser, error, json_text, rate, run, write

TYPE_CHECKING = False  # typing costs 5 ms at import
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["Call", "Control", "CtlError", "main"]

DEFAULT_CONTROL = "http://127.0.0.1:8170"
CONTROL_ENV = "AZIMDS_CONTROL"
TOKEN_ENV = "AZIMDS_CONTROL_TOKEN"
TOKEN_FILE = "control-token"
TIMEOUT = 30.0  # seconds; the control plane answers at once, this only bounds a hung one
EXIT_CODES = ("exit codes: 0 success, 1 not found (no such node or event), 2 usage error, refusal (the "
              "control plane's reason on stderr) or no answer")
TOKEN_HELP = (f"bearer token (default: ${TOKEN_ENV}, else the '{TOKEN_FILE}' file that azimds serve writes "
              "in its state directory; --state-dir names that directory and takes precedence over the "
              "variable)")


class CtlError(Exception):
    """A failure to report in one line; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


_NO_BODY = object()


class Call:
    """One control-plane request, as a subcommand asks for it: ``body`` is any JSON value (``null`` too)."""

    __slots__ = ("body", "method", "path", "query")

    def __init__(self, method: str, path: str, body: Any = _NO_BODY, query: dict[str, Any] | None = None) -> None:
        self.method, self.path, self.query = method, path, query or {}
        self.body = None if body is _NO_BODY else json.dumps(body).encode()

    def target(self) -> str:
        query = {key: value for key, value in self.query.items() if value is not None}
        return self.path + ("?" + urlencode(query) if query else "")


class Control:
    """The control plane at ``url``, reached with ``token`` (``source`` says where the token came from)."""

    def __init__(self, url: str, token: str, source: str) -> None:
        try:
            self._endpoint = Endpoint(url, what="a control plane URL")
        except UsageError as exc:
            raise CtlError(str(exc)) from None
        self.url = self._endpoint.url
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                         "User-Agent": "azimds-ctl"}
        self._source = source

    def send(self, call: Call) -> tuple[str, bytes]:
        """The answer's content type and body; CtlError for no answer or a refusal (status 400 and up)."""
        try:
            reply = self._endpoint.exchange(call.method, call.target(), headers=self._headers, body=call.body,
                                            timeout=TIMEOUT)
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else \
                getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise CtlError(f"no answer from the control plane at {self.url}: {reason}") from None
        if reply.status >= 400:
            raise CtlError(self._refusal(reply.status, reply.body),
                           EXIT_NOT_FOUND if reply.status == 404 else EXIT_USAGE)
        return reply.header("content-type") or "", reply.body

    def _refusal(self, status: int, body: bytes) -> str:
        """The control plane's reason: its ``error``, then its ``problems``."""
        if status == 401:
            return f"the control plane at {self.url} refused the token from {self._source}"
        try:
            data = json.loads(body)
            message, problems = str(data["error"]), data.get("problems") or []
        except (ValueError, KeyError, TypeError):
            return f"{self.url} answered {status}: {body.decode('utf-8', 'replace')[:200] or 'no reason given'}"
        return message + (": " + "; ".join(str(p) for p in problems) if problems else "")


# -- connection settings -----------------------------------------------------------------------------------

def token_of(args: argparse.Namespace) -> tuple[str, str]:
    """The token and where it came from: --token, --state-dir's file, $AZIMDS_CONTROL_TOKEN, the default file."""
    if args.token:
        return args.token, "--token"
    if args.state_dir is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    path = os.path.join(args.state_dir or default_state_dir(), TOKEN_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except FileNotFoundError:
        raise CtlError(f"no control token: {path} does not exist; give --token, set ${TOKEN_ENV}, or point "
                       "--state-dir at the state directory of the running azimds serve") from None
    except OSError as exc:
        raise CtlError(f"cannot read the control token: {path}: {exc.strerror or exc}") from None
    if not token:
        raise CtlError(f"no control token: {path} is empty")
    return token, path


# -- argument types ----------------------------------------------------------------------------------------

def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not JSON ({exc.args[0].split(':')[0]}): {text!r}; a JSON string keeps its quotes, "
            f"e.g. '\"{text}\"'") from None


def _node(text: str) -> str:
    path = text.strip("/")
    if not path:
        raise argparse.ArgumentTypeError("give a path below the document, e.g. compute/name")
    return path


def _pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"a tag is NAME=VALUE, not {text!r}")
    return name, value


def _span(text: str) -> float:
    """Seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text}")
    return value


def _moment(text: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC unless it says otherwise), as epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a time is epoch seconds or ISO 8601 "
                                         f"(2026-04-11T22:00:00Z), not {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


# -- the calls ---------------------------------------------------------------------------------------------

def _metadata(path: str | None) -> str:
    return "/v1/metadata" + ("/" + quote(path.strip("/"), safe="/") if path and path.strip("/") else "")


def _event(event_id: str, action: str) -> str:
    return f"/v1/events/{quote(event_id, safe='')}/{action}"


def _event_action(action: str) -> Callable[[argparse.Namespace], Call]:
    return lambda args: Call("POST", _event(args.event_id, action))


def _tags(args: argparse.Namespace) -> Call:
    if bool(args.pairs) == args.clear:
        raise CtlError("give NAME=VALUE pairs (they replace every tag), or --clear to remove every tag")
    tags: dict[str, str] = {}
    for name, value in args.pairs:
        if name in tags:
            raise CtlError(f"tag {name!r} is given twice")
        tags[name] = value
    return Call("PUT", "/v1/tags", tags)


def _schedule(args: argparse.Namespace) -> Call:
    fields = {"type": args.type, "resources": args.resources, "source": args.source, "notice": args.notice,
              "notBefore": args.not_before, "durationInSeconds": args.duration, "active": args.active,
              "description": args.description, "eventId": args.event_id, "started": args.started or None,
              "approval": args.approval}
    return Call("POST", "/v1/events", {key: value for key, value in fields.items() if value is not None})


def _clock(args: argparse.Namespace) -> Call:
    change = {key: value for key, value in (("advance", args.advance), ("speed", args.speed), ("time", args.time))
              if value is not None}
    return Call("POST", "/v1/clock", change) if change else Call("GET", "/v1/clock")


def _journal(args: argparse.Namespace) -> Call:
    return Call("GET", "/v1/journal", query={"path": args.path, "status": args.status, "limit": args.limit,
                                             "peer": args.peer, "since": args.since})


# -- the parser --------------------------------------------------------------------------------------------

def _common(defaults: bool) -> argparse.ArgumentParser:
    """Connection and output options: given to ``ctl`` itself and to every subcommand, so they may come
    before or after it; the subcommands' copies default to nothing, which keeps a value given earlier."""
    common = Parser(add_help=False)
    unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument("--control", metavar="URL", **unset,
                        help=f"the control plane (default: ${CONTROL_ENV}, else {DEFAULT_CONTROL})")
    common.add_argument("--token", metavar="TOKEN", **unset, help=TOKEN_HELP)
    common.add_argument("--state-dir", metavar="DIR", **unset,
                        help=f"read the token from DIR/{TOKEN_FILE} (default directory: "
                             "$XDG_STATE_HOME/azimds, else ~/.local/state/azimds, as azimds serve)")
    common.add_argument("--pretty", action="store_true", **unset, help="indent JSON answers")
    return common


class _Builder:
    """Adds subcommands, each with the common options and the function that makes its Call."""

    def __init__(self, group: Any, common: argparse.ArgumentParser) -> None:
        self.group, self.common = group, common

    def add(self, name: str, summary: str, call: Callable[[argparse.Namespace], Call], description: str = "",
            *, per_vm: bool = False) -> argparse.ArgumentParser:
        """A subcommand; ``per_vm``: its route takes ``?vm=NAME`` (a fleet's VM), given as --vm."""
        parser: argparse.ArgumentParser = self.group.add_parser(name, parents=[self.common], help=summary,
                                       description=description or summary[0].upper() + summary[1:] + ".",
                                       epilog=EXIT_CODES)
        parser.set_defaults(call=call, vm=None)
        if per_vm:
            parser.add_argument("--vm", metavar="NAME", help="in a fleet, the VM to act on (default: the "
                                                             "profile's own VM)")
        return parser

    def nest(self, name: str, summary: str) -> _Builder:
        parser = self.group.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                       epilog=EXIT_CODES)
        group = parser.add_subparsers(dest=f"{name}_operation", metavar="OPERATION")
        group.required = True
        return _Builder(group, self.common)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="azimds ctl", parents=[_common(True)], epilog=EXIT_CODES, description=(
        "Steer a running emulator through its control plane: each operation is one request, its answer "
        "printed as JSON (metrics as text). Connection options may come before or after the operation."))
    group = parser.add_subparsers(dest="operation", metavar="OPERATION")
    group.required = True
    top = _Builder(group, _common(False))
    _add_metadata(top)
    _add_events(top.nest("events", "list, schedule and drive scheduled events"))
    _add_clock(top)
    _add_faults(top.nest("faults", "list, add and clear faults"))
    _add_journal(top)
    _add_fleet(top.nest("fleet", "list a fleet's VMs and sets, drive its scale sets"))
    reprovision = top.add("reprovision", "hand a pre-provisioned VM over: /metadata/reprovisiondata answers its "
                                         "OVF environment", lambda a: Call("POST", "/v1/reprovision", a.patch),
                          per_vm=True)
    reprovision.add_argument("patch", nargs="?", type=_value, metavar="JSON",
                             help="a merge patch of its documents at hand-over (its name, keys, customData…)")
    top.add("reboot", "the VM restarts (or is reimaged, or its disks change): a scale-set instance then shows the "
                      "tags changed before", lambda a: Call("POST", "/v1/reboot"), per_vm=True)
    top.add("reset", "back to the profile: metadata and faults; events are cancelled",
            lambda a: Call("POST", "/v1/reset"))
    top.add("reload", "load the profile file again and reset to it", lambda a: Call("POST", "/v1/reload"))
    top.add("metrics", "print the Prometheus metrics", lambda a: Call("GET", "/metrics"))
    top.add("openapi", "print the control plane's OpenAPI document", lambda a: Call("GET", "/openapi.json"))
    return parser


def _add_metadata(top: _Builder) -> None:
    path_help = "slash-separated keys and array indexes below the document, e.g. compute/tagsList/0"
    get = top.add("get", "read the whole metadata document or one node", lambda a: Call("GET", _metadata(a.path)),
                  per_vm=True)
    get.add_argument("path", nargs="?", metavar="PATH", help=path_help + " (default: the whole document)")
    put = top.add("set", "replace a node with a JSON value, validated like a profile",
                  lambda a: Call("PUT", _metadata(a.path), a.value),
                  "Replace a node with a JSON value. The change is validated like a profile and refused whole "
                  "if anything is wrong. A JSON string keeps its quotes: ctl set compute/name '\"web-02\"'.",
                  per_vm=True)
    put.add_argument("path", type=_node, metavar="PATH", help=path_help)
    put.add_argument("value", type=_value, metavar="VALUE_JSON", help="the new value, as JSON")
    patch = top.add("patch", "merge-patch the document or a node (RFC 7396)",
                    lambda a: Call("PATCH", _metadata(a.path), a.patch), per_vm=True)
    patch.add_argument("path", nargs="?", metavar="PATH", help=path_help + " (default: the whole document)")
    patch.add_argument("patch", type=_value, metavar="JSON", help="the merge patch; null undoes a key's changes")
    delete = top.add("delete", "undo a node's changes (back to the profile's value, or its default); an array "
                               "item is removed",
                     lambda a: Call("DELETE", _metadata(a.path)), per_vm=True)
    delete.add_argument("path", type=_node, metavar="PATH", help=path_help)
    tags = top.add("tags", "replace every tag (compute.tags and tagsList together)", _tags, per_vm=True)
    tags.add_argument("pairs", nargs="*", type=_pair, metavar="NAME=VALUE", help="the new tags")
    tags.add_argument("--clear", action="store_true", help="remove every tag")


def _add_events(events: _Builder) -> None:
    events.add("list", "print the events and DocumentIncarnation", lambda a: Call("GET", "/v1/events"),
               per_vm=True)
    schedule = events.add(
        "schedule", "publish an event now", _schedule,
        "Publish an event now, Scheduled with the real minimum notice for its type (Freeze and Reboot 15 min, "
        "Redeploy 10 min, Terminate 5 min, Preempt 30 s) unless --in or --not-before says otherwise, or "
        "Started at once with --started (a hardware failure). Prints the event.", per_vm=True)
    schedule.add_argument("type", choices=EVENT_TYPES, metavar="TYPE", help=", ".join(EVENT_TYPES))
    when = schedule.add_mutually_exclusive_group()
    when.add_argument("--in", dest="notice", type=_span, metavar="SECONDS",
                      help="NotBefore this many seconds from now")
    when.add_argument("--not-before", type=_moment, metavar="TIME", help="NotBefore: ISO 8601 or epoch seconds")
    schedule.add_argument("--resources", nargs="+", metavar="VM", help="the VMs it lists (default: this VM)")
    schedule.add_argument("--source", choices=("Platform", "User"), help="EventSource (default: Platform)")
    schedule.add_argument("--duration", type=int, metavar="N",
                          help="DurationInSeconds: expected impact, -1 unknown (default: per type)")
    schedule.add_argument("--active", type=_span, metavar="SECONDS",
                          help="seconds it stays Started before it is gone (default: per type, 5 or 10 minutes)")
    schedule.add_argument("--description", metavar="TEXT", help="Description (default: what Azure writes)")
    schedule.add_argument("--id", dest="event_id", metavar="EVENT_ID", help="EventId (default: a new GUID)")
    schedule.add_argument("--started", action="store_true", help="publish it Started (a hardware failure)")
    schedule.add_argument("--approval", choices=("any", "all"),
                          help="whose approval starts it: any VM it lists (default, as Azure), or all of them")
    approve = events.add("approve", "approve an event, as a VM would by POST",
                         lambda a: Call("POST", _event(a.event_id, "approve"), query={"by": a.by}),
                         per_vm=True)
    approve.add_argument("event_id", metavar="ID")
    approve.add_argument("--by", metavar="VM", help="the approving VM (default: every VM it lists)")
    for action, summary in (("start", "start a Scheduled event now"),
                            ("complete", "end a Started event (it disappears)"),
                            ("cancel", "withdraw a Scheduled event (it disappears)")):
        command = events.add(action, summary, _event_action(action), per_vm=True)
        command.add_argument("event_id", metavar="ID")


def _add_clock(top: _Builder) -> None:
    clock = top.add("clock", "read the emulated clock, or move it and change its speed", _clock,
                    "Without options, print the clock. Otherwise jump to --time, then --advance, then set "
                    "--speed; events due meanwhile make their transitions in order.")
    clock.add_argument("--advance", type=_span, metavar="SECONDS", help="move forward this many seconds")
    clock.add_argument("--speed", type=rate, metavar="X", help="run X times as fast; 0 stops it (manual)")
    clock.add_argument("--time", type=_moment, metavar="TIME", help="jump forward to ISO 8601 or epoch seconds")


def _add_faults(faults: _Builder) -> None:
    faults.add("list", "print the active faults", lambda a: Call("GET", "/v1/faults"))
    add = faults.add("add", "add a fault", lambda a: Call("POST", "/v1/faults", {"spec": a.spec}),
                     "Add a fault, written as for azimds serve --fault: e.g. "
                     "'/metadata/instance*=status:410,first-seconds:70'.")
    add.add_argument("spec", metavar="PATTERN=SPEC")
    faults.add("clear", "remove every fault", lambda a: Call("DELETE", "/v1/faults"))


def _add_journal(top: _Builder) -> None:
    journal = top.add("journal", "print the requests the metadata port answered", _journal)
    journal.add_argument("--path", metavar="GLOB", help="only paths matching GLOB, e.g. '/metadata/identity/*'")
    journal.add_argument("--status", type=int, metavar="N", help="only answers with status N")
    journal.add_argument("--limit", type=_count, metavar="N", help="only the last N (default: 1000)")
    journal.add_argument("--peer", metavar="ADDRESS", help="only requests from this source address")
    journal.add_argument("--since", type=_moment, metavar="TIME", help="only from TIME (epoch seconds or ISO 8601)")


def _add_fleet(fleet: _Builder) -> None:
    listing = fleet.add("list", "list the VMs (a page of them) with their sets, addresses, fault and update "
                                "domains, and the sets (with which address holds each dynamic instance)",
                        lambda a: Call("GET", "/v1/fleet", query={"offset": a.offset, "limit": a.limit}),
                        "List the VMs in a fixed order (the profile's own VM, the explicit VMs, then each scale "
                        "set's instances by index), a page at a time, and the scale sets and availability sets; for a "
                        "dynamic scale set, which source address holds each instance and when it is let go.")
    listing.add_argument("--offset", type=_count, metavar="N", help="skip the first N VMs")
    listing.add_argument("--limit", type=_count, metavar="N", help="at most N VMs (default: 100, at most 1000)")
    walk = fleet.add("walk", "walk a scale set's update domains: one event per domain, --gap apart",
                     lambda a: Call("POST", "/v1/fleet/walk", {key: value for key, value in (
                         ("set", a.set), ("type", a.type), ("gap", a.gap), ("durationInSeconds", a.duration))
                         if value is not None}),
                     "Plan a platform update that walks a scale set's update domains: one event per domain, "
                     "each with its type's minimum notice, --gap apart. Prints the scale set's events.")
    walk.add_argument("set", metavar="SCALE_SET", help="the scale set's name")
    walk.add_argument("--type", choices=EVENT_TYPES, metavar="TYPE", help="event type (default: Freeze)")
    walk.add_argument("--gap", type=_span, metavar="SECONDS", help="seconds between domains (default: 1800)")
    walk.add_argument("--duration", type=int, metavar="N", help="DurationInSeconds of each event")


# -- running -----------------------------------------------------------------------------------------------

def _show(kind: str, body: bytes, pretty: bool) -> None:
    if not body:
        return
    if kind.startswith("application/json"):
        write(json_text(json.loads(body), pretty=pretty))
    else:
        text = body.decode("utf-8", "replace")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def main(argv: Sequence[str]) -> int:
    """``azimds ctl ARGS``: parse, send one request, print; one line on stderr for any failure."""
    args = build_parser().parse_args(argv)

    def act() -> int:
        try:
            call = args.call(args)
            call.query.setdefault("vm", args.vm)
            control = Control(args.control or os.environ.get(CONTROL_ENV) or DEFAULT_CONTROL, *token_of(args))
            _show(*control.send(call), pretty=args.pretty)
        except CtlError as exc:
            error(str(exc))
            return exc.code
        return EXIT_OK

    return run(act)
