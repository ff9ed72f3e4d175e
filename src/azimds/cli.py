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
    serve.add_argument("--clock", choices=("real", "manual"), default="real",
                       help="real time, or manual: time moves only when the control plane says (default: real)")
    serve.add_argument("--clock-speed", type=_rate, default=1.0, metavar="X",
                       help="run the clock X times as fast, e.g. 60 for an hour a minute (default: 1)")
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
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .emulator import DEFAULT_PORT, EmulatorConfig, default_state_dir, serve
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
                            control_token=args.control_token, log_format=args.log_format)
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
