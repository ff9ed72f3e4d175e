"""The ``azimds`` command: a thin layer over the client (``imds``, ``conformance``), the emulator (``emulator``)
and its control plane (``ctl``).

Exit codes: 0 success, 1 not found, 2 usage error or failure (one line on stderr), 3 an attested document
that fails verification. Only the parser of the command being run is built, so that ``azimds tags KEY``
starts fast; ``--help`` and an unknown command build them all.
"""

from __future__ import annotations

import sys

from ._common import EXIT_USAGE, Parser, run, set_debug

TYPE_CHECKING = False  # typing costs 5 ms at import, and this module loads on every call
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["build_parser", "main"]

EXIT_CODES = ("exit codes: 0 success, 1 not found (no such tag, path, node or event) or differences (conformance "
              "--compare), 2 usage error or no answer, 3 attested document not verified")


def build_parser(command: str | None = None) -> Parser:
    """The ``azimds`` parser: with ``command``, only that command's part of it (what ``main`` needs)."""
    from .. import __version__

    parser = Parser(prog="azimds", description="Azure Instance Metadata Service emulator and client.",
                    epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"azimds {__version__}")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of failures (also AZIMDS_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in _modules(command):
        module.add_commands(commands)
    if command is None:
        commands.add_parser("ctl", add_help=False, help="steer a running emulator through its control plane "
                                                        "(see azimds ctl --help)")
    return parser


def _modules(command: str | None) -> list[Any]:
    """The command modules whose parsers ``command`` needs: the one that has it (importing the IMDS commands'
    first, and the others only if it is not theirs: ``azimds tags`` must start fast); all for None; none for a
    command nobody has."""
    from . import imds

    if command is not None and command in imds.COMMANDS:
        return [imds]
    from . import conformance, emulator

    if command is None:
        return [emulator, imds, conformance]
    return [module for module in (emulator, conformance) if command in module.COMMANDS]


def main(argv: Sequence[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    head = args_in[:args_in.index("--")] if "--" in args_in else args_in
    debug = "--debug" in head
    if debug:
        args_in.remove("--debug")
    set_debug(debug)
    if args_in[:1] == ["ctl"]:
        from .ctl import main as ctl

        return ctl(args_in[1:])
    command = args_in[0] if args_in and _modules(args_in[0]) else None
    try:
        args = build_parser(command).parse_args(args_in)
    except KeyboardInterrupt:
        return 130
    code: int = run(lambda: args.run(args))
    return code if isinstance(code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
