"""The ``azimds`` command: argparse only, each command importing what it needs when it runs."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azimds", description="Azure Instance Metadata Service emulator and client.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

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
    serve.set_defaults(run=_serve)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .emulator import DEFAULT_PORT, EmulatorConfig, serve
    from .faults import parse_fault
    from .profile import ProfileError

    try:
        faults = tuple(parse_fault(text) for text in args.fault)
    except ValueError as exc:
        _error(f"--fault: {exc}")
        return EXIT_USAGE
    config = EmulatorConfig(profile=args.profile, host=args.host,
                            port=DEFAULT_PORT if args.port is None else args.port,
                            rate_limit=args.rate_limit, newest_version=args.newest_version, faults=faults)
    try:
        return serve(config, ready=lambda line: print(line, flush=True))
    except ProfileError as exc:
        _error(f"bad profile\n{exc}")
    except ValueError as exc:
        _error(str(exc))
    except OSError as exc:
        _error(f"cannot listen on {args.host}:{config.port}: {exc.strerror or exc}")
    return EXIT_USAGE


def _error(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
