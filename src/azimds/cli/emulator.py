"""The emulator's commands: ``serve``, ``run`` (a command beside an emulator in a network namespace) and ``ca``.

``serve``'s flags are made from ``azimds.emulator.config.OPTIONS`` (one per option, each with its
``AZIMDS_*`` variable); values are validated in one place, ``Config.build``, which names the flag, variable
or profile key a bad one came from. The emulator's dependencies are imported when a command runs; a command
that needs them in an install without the ``emulator`` extra says in one line what to install (exit 2).
"""

from __future__ import annotations

import argparse
import re
import sys

from ._common import EXIT_OK, EXIT_USAGE, error, rate, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["COMMANDS", "add_commands"]

#: The commands this module adds, and so handles.
COMMANDS = ("serve", "_worker", "run", "_run-inside", "ca", "state")

EXTRA = "emulator"
_EXTRA = f"the emulator needs its extra: pip install 'azimds[{EXTRA}]'"


def _needs_extra(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` needs the emulator's extra: without it, one line naming what to install, and exit 2."""
    def guarded(args: argparse.Namespace) -> int:
        missing = _missing_requirements(EXTRA)
        if missing:
            error(f"{_EXTRA} (not installed: {', '.join(missing)})")
            return EXIT_USAGE
        try:
            return command(args)
        except ModuleNotFoundError as exc:  # installed without metadata pip can see, or a part of one missing
            if (exc.name or "azimds").partition(".")[0] == "azimds":
                raise
            error(f"{_EXTRA} ({exc.name} is missing)")
            return EXIT_USAGE
    return guarded


def _missing_requirements(extra: str) -> list[str]:
    """The distributions ``extra`` requires (those without a platform condition) that are not installed;
    none when azimds itself is not an installed distribution (run from a source tree)."""
    from importlib import metadata

    try:
        requirements = metadata.requires("azimds") or []
    except metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        if " ".join(marker.replace("'", '"').split()) != f'extra == "{extra}"':
            continue
        name = re.match(r"[A-Za-z0-9._-]+", spec.strip())
        if name is None:
            continue
        try:
            metadata.distribution(name.group())
        except metadata.PackageNotFoundError:
            missing.append(name.group())
    return missing


def add_commands(commands: Any) -> None:
    _add_serve(commands)
    _add_run(commands)
    _add_ca(commands)
    _add_state(commands)


def _add_serve(commands: Any) -> None:
    from ..emulator.config import OPTIONS

    serve = commands.add_parser(
        "serve", help="run the emulator", description="Serve /metadata for the VM a profile describes "
        "(the embedded default VM without --profile). Prints 'azimds: serving URL' when ready. Every option "
        "may also be given by its AZIMDS_* variable or, where it has one, the profile's azimds: key; flags win "
        "over variables, variables over the profile.")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"metavar": option.metavar, "dest": option.name, "default": None,
                                  "help": f"{option.help} (${option.env})"}
        if option.repeatable:
            kwargs["action"] = "append"
        if option.switch:
            kwargs = {"dest": option.name, "action": "store_const", "const": True, "default": None,
                      "help": kwargs["help"]}
        serve.add_argument(option.flag, **kwargs)
    serve.set_defaults(run=_needs_extra(_serve))
    worker = commands.add_parser("_worker", description="One worker of azimds serve --workers N, started by its "
                                 "supervisor: its configuration on stdin, its listening socket and its link to the "
                                 "supervisor inherited as descriptors.")
    worker.add_argument("--index", type=int, required=True, help="the worker's place in the supervisor's group")
    worker.add_argument("--listen-fd", type=int, required=True, help="the listening socket's descriptor")
    worker.add_argument("--link-fd", type=int, required=True, help="the descriptor of the link to the supervisor")
    worker.set_defaults(run=_needs_extra(_worker))


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
        command.add_argument("--rate-limit", type=rate, metavar="N", default=None,
                             help="requests per second per source address, 0 for no limit (default: 5)")
        command.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                             help="the command and its arguments")
        command.set_defaults(run=_needs_extra(run))


def _add_ca(commands: Any) -> None:
    ca = commands.add_parser("ca", help="the emulator's certificate authority",
                             description="Export the emulator's root (and intermediate) certificate as PEM: "
                                         "what clients trust to verify its attested documents.")
    ca_commands = ca.add_subparsers(dest="ca_command", metavar="COMMAND")
    ca_commands.required = True
    export = ca_commands.add_parser("export", help="write the root certificate (PEM)",
                                    description="Write the root certificate of the CA in the state directory. "
                                                "It never makes one: azimds serve makes its CA on first use, and "
                                                "a running emulator also serves its root at /azimds/ca/root.crt.")
    export.add_argument("--state-dir", metavar="DIR", help="the emulator's state directory "
                                                            "(default: ~/.local/state/azimds)")
    export.add_argument("--intermediate", action="store_true", help="the intermediate too, after the root")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=_needs_extra(_ca_export))


def _add_state(commands: Any) -> None:
    state = commands.add_parser("state", help="the emulator's state directory",
                                description="Manage the state directory azimds serve keeps its state in.")
    state_commands = state.add_subparsers(dest="state_command", metavar="COMMAND")
    state_commands.required = True
    reset = state_commands.add_parser(
        "reset", help="set the state aside and start afresh",
        description="Move the state (state.sqlite, pki/, control-token) into STATE_DIR/aside-TIME/, so that the "
                    "next azimds serve starts from the profile with a new CA. Nothing is deleted. Refused while an "
                    "azimds serve uses the directory.")
    reset.add_argument("--state-dir", metavar="DIR", help="the state directory (default: "
                                                          "$XDG_STATE_HOME/azimds, else ~/.local/state/azimds)")
    reset.set_defaults(run=_state_reset)


def _state_reset(args: argparse.Namespace) -> int:
    from ..emulator.config import default_state_dir
    from ..emulator.statedir import StateDir

    directory = args.state_dir or default_state_dir()
    aside = StateDir(directory).set_aside()
    print(f"azimds: the state of {directory} is now in {aside}" if aside else f"azimds: {directory} holds no state",
          file=sys.stderr)
    return EXIT_OK


# -- serve -------------------------------------------------------------------------------------------------

def _serve(args: argparse.Namespace) -> int:
    from ..emulator.app import App, configure, serve
    from ..emulator.config import OPTIONS, Config, env_options, serve_state_dir

    flags = {option.name: getattr(args, option.name) for option in OPTIONS}
    env = env_options()
    port = Config.build(env=env, flags=flags).port  # where the state goes depends on it (every value checked)
    config, profile = configure(flags=flags, env=env, defaults={"state_dir": serve_state_dir(port)})
    if config.control_public:
        warn(f"the control plane listens on {config.control_host}: plain HTTP, reachable from other machines; "
             "anyone with the token can change the emulated world")
    if config.add_host_address:  # before anything listens on it
        from ..emulator.hostaddr import add_address

        if add_address(config.host):
            print(f"azimds: added {config.host}/32 to lo", file=sys.stderr, flush=True)
    if config.workers > 1:
        from ..emulator.workers import serve_workers

        return serve_workers(config, profile, ready=lambda line: print(line, flush=True))
    return serve(App(config, profile), ready=lambda line: print(line, flush=True))


def _worker(args: argparse.Namespace) -> int:
    from ..emulator.workers import run_worker

    return run_worker(args.index, args.listen_fd, args.link_fd)


# -- ca ----------------------------------------------------------------------------------------------------

def _ca_export(args: argparse.Namespace) -> int:
    from ..emulator.config import default_state_dir
    from ..emulator.service.pki import export_ca

    text = export_ca(args.state_dir or default_state_dir(), intermediate=args.intermediate)  # never makes one
    if args.output:
        with open(args.output, "w", encoding="ascii") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


# -- run -------------------------------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    """Re-run this CLI as ``_run-inside`` in a new network namespace, passing the options on."""
    from ..emulator import netns

    options = []
    for flag, value in (("--profile", args.profile), ("--state-dir", args.state_dir),
                        ("--rate-limit", args.rate_limit)):
        if value is not None:
            options += [flag, str(value)]
    try:
        return _exit_code(netns.run(_command_line(args), options))
    except netns.NetnsError as exc:
        error(str(exc))
        return EXIT_USAGE


def _run_inside(args: argparse.Namespace) -> int:
    """In the namespace: serve on 169.254.169.254:80 and run the command (netns.inside)."""
    import subprocess

    from ..emulator import netns
    from ..errors import ProfileError

    try:
        return _exit_code(netns.inside(_command_line(args), profile=args.profile, state_dir=args.state_dir,
                                       rate_limit=args.rate_limit))
    except ProfileError as exc:
        error(f"bad profile: {'; '.join(str(exc).splitlines())}")
    except subprocess.CalledProcessError as exc:
        error(f"cannot set up the namespace's loopback: {' '.join(exc.cmd)}: "
              f"{(exc.stderr or b'').decode(errors='replace').strip() or f'exit {exc.returncode}'}")
    except OSError as exc:
        error(f"cannot start the emulator: {exc}")
    return EXIT_USAGE


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command after ``--`` (argparse keeps that separator in front of a REMAINDER)."""
    command = list(args.command)
    return command[1:] if command[:1] == ["--"] else command


def _exit_code(code: int) -> int:
    """A child's exit code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - code if code < 0 else code
