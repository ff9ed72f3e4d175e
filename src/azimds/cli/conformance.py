"""``azimds conformance``: probe an IMDS where its documentation is silent and write the answers as one report
to attach to an issue; with ``--compare``, list every difference between such a report and an emulator.

Loaded to build the parser, so it imports nothing but ``_common``; the probes themselves load when the command
runs.
"""

from __future__ import annotations

from ._common import EXIT_OK, Parser, note, rate, seconds, warn, write

TYPE_CHECKING = False  # typing costs 5 ms at import, and this module loads on every call
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["COMMANDS", "add_commands"]

#: The commands this module adds, and so handles.
COMMANDS = ("conformance",)

EXIT_DIFFERENT = 1
EXIT_CODES = ("exit codes: 0 success (with --compare: no difference), 1 differences, 2 usage error, a file that "
              "is not a report, or no answer")


def add_commands(commands: Any) -> None:
    """Add ``conformance`` to ``azimds``'s subcommands."""
    command: Parser = commands.add_parser(
        "conformance", help="probe IMDS where its docs are silent; compare a report with an emulator",
        epilog=EXIT_CODES,
        description="Send a fixed set of read-only probes (see --list) to IMDS, one every --interval seconds, "
                    "and write every answer as one JSON report: status, a few headers, error bodies with "
                    "identifiers replaced, and only the shape of successful answers (no token, signature, id, "
                    "name, key, address or tag). Run it on a real VM and attach the report to an issue. With "
                    "--compare REPORT, send the report's probes to --endpoint (an emulator) and print each "
                    "difference on its own line.")
    command.add_argument("--endpoint", metavar="URL",
                         help="IMDS base URL (default: $AZIMDS_ENDPOINT, else http://169.254.169.254); proxy "
                              "environment variables are never used")
    mode = command.add_mutually_exclusive_group()
    mode.add_argument("--compare", metavar="REPORT",
                      help="send the probes REPORT holds and list how the answers differ from it")
    mode.add_argument("--list", action="store_true", help="print the probes (id, request, topic) and send nothing")
    command.add_argument("--output", "-o", metavar="FILE",
                         help="write the report here (default: stdout; with --compare, not written unless asked)")
    command.add_argument("--interval", type=rate, default=0.25, metavar="SECONDS",
                         help="seconds between two requests (default: 0.25, 4 a second, under IMDS's limit of 5)")
    command.add_argument("--deadline", type=seconds, default=300.0, metavar="SECONDS",
                         help="stop sending after this long (default: 300: the first scheduled-events request "
                              "may take two minutes on a VM)")
    command.add_argument("-v", "--verbose", action="store_true", help="print each probe's status on stderr")
    command.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import datetime as dt

    from .. import __version__
    from ..client import (
        compare_report,
        conformance_report,
        load_report,
        probe_table,
        report_probes,
        resolve_endpoint,
        run_probes,
    )

    if args.list:
        write(probe_table())
        return EXIT_OK
    endpoint = resolve_endpoint(args.endpoint)
    doc = None
    unknown: list[str] = []
    kwargs: dict[str, Any] = {}
    if args.compare is not None:
        with open(args.compare, "rb") as source:
            doc = load_report(source.read().decode("utf-8", "replace"), args.compare)
        kwargs["probes"], unknown = report_probes(doc)
    started = dt.datetime.now(dt.UTC)
    records = run_probes(endpoint, interval=args.interval, deadline=args.deadline,
                         trace=note if args.verbose else None, **kwargs)
    if doc is None or args.output is not None:
        _write(conformance_report(records, endpoint.url, started, __version__), args.output)
    failed = [record["id"] for record in records if "failure" in record]
    if failed:
        warn(f"{len(failed)} of {len(records)} probes got no answer: {', '.join(failed)}")
    if doc is None:
        return EXIT_OK
    lines = unknown + compare_report(doc, records)
    write("\n".join(lines))
    return EXIT_DIFFERENT if lines else EXIT_OK


def _write(report: dict[str, Any], path: str | None) -> None:
    import json

    text = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False)
    if path is None:
        write(text)
        return
    with open(path, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    note(f"{len(report['probes'])} probes written to {path}")
