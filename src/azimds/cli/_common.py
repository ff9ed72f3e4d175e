"""What every ``azimds`` command shares: the parser, exit codes, output, and how a failure becomes one line.

A failure azimds expects (``azimds.errors.AzimdsError``, a file that cannot be written) is one line on stderr
and an exit code; anything else is a bug, said as such in one line, with the traceback behind ``--debug`` or
``AZIMDS_DEBUG=1``. Standard library only, and cheap: every command loads it.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import AzimdsError, NotFound, ProfileError

TYPE_CHECKING = False  # typing costs 5 ms at import, and this module loads on every call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNVERIFIED", "EXIT_USAGE", "Formatter", "Parser", "debugging",
           "drop_stdout", "error", "json_text", "note", "rate", "run", "seconds", "set_debug", "warn", "write"]

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNVERIFIED = 0, 1, 2, 3
DEBUG_ENV = "AZIMDS_DEBUG"
_DEBUG = [False]


class Parser(argparse.ArgumentParser):
    """argparse, but options are never abbreviated and a usage error is one line on stderr (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class Formatter(argparse.HelpFormatter):
    """argparse's help layout, told the terminal's width as ``shutil`` would say it, without importing ``shutil``
    (with its compression modules), which argparse does for every argument it checks: milliseconds of every
    CLI call."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width if width is not None else _width() - 2)


def _width() -> int:
    """The terminal's columns: ``$COLUMNS``, else the terminal's, else 80 (``shutil.get_terminal_size``'s rule)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            stdout = sys.__stdout__
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout is not None else 0
        except (ValueError, OSError):
            columns = 0
    return columns or 80



def debugging() -> bool:
    return _DEBUG[0] or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def set_debug(on: bool) -> None:
    _DEBUG[0] = on


def run(action: Callable[[], int]) -> int:
    """Run a command; every failure becomes one line on stderr and an exit code (tracebacks under --debug)."""
    try:
        return action()
    except NotFound as exc:
        error(str(exc))
        return EXIT_NOT_FOUND
    except ProfileError as exc:
        for line in str(exc).splitlines():
            error(line)
        _trace()
        return EXIT_USAGE
    except AzimdsError as exc:
        error(" ".join(str(exc).split()))
        _trace()
        return EXIT_USAGE
    except BrokenPipeError:
        drop_stdout()
        return EXIT_OK
    except OSError as exc:
        error(f"{exc.filename or 'output'}: {exc.strerror or exc}")
        _trace()
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a user gets one line, never a traceback
        error(f"this is a bug in azimds, please report it: {type(exc).__name__}: {exc}"
              + ("" if debugging() else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"))
        _trace()
        return EXIT_USAGE


def _trace() -> None:
    if debugging():
        import traceback

        traceback.print_exc()


# -- argument types ----------------------------------------------------------------------------------------

def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more, not {text}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


# -- output ------------------------------------------------------------------------------------------------

def json_text(value: Any, *, pretty: bool = False) -> str:
    import json

    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def write(text: str) -> None:
    """Print ``text`` and a newline; nothing at all for an empty text."""
    if text:
        sys.stdout.write(text + "\n")


def error(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"azimds: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr, flush=True)


def drop_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
