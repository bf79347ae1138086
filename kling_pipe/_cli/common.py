"""What every `kling-pipe` command shares: the exit codes, the help layout, one-line errors.

Exit codes are a contract: 0 success, 1 some shots failed, 2 invalid input, a refused
plan or a file the machine would not let us read or write, 130 interrupted, 141 when
whoever reads our output stopped reading (`kling-pipe plan x.toml | head -1`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Final, TextIO

from kling_pipe._decisions.results import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from kling_pipe.exceptions import Problem, ShotListError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "Formatter",
    "describe_os_error",
    "examples",
    "print_problems",
    "print_warnings",
]

EXIT_INVALID: Final = 2
EXIT_INTERRUPTED: Final = 130
#: 128 + SIGPIPE: what a shell reports for a command killed because its reader went away,
#: and not one of the codes above, so `set -o pipefail` scripts can tell it apart.
EXIT_BROKEN_PIPE: Final = 141

#: Every command's help keeps the line breaks its description and examples are written with.
Formatter: Final = argparse.RawDescriptionHelpFormatter


def examples(*lines: str) -> str:
    """Format a command's epilog: ``examples:`` and one indented command per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def print_problems(error: ShotListError, stream: TextIO | None = None) -> None:
    """Print an invalid shot list's problems, one line each (to stderr by default)."""
    for line in error.lines():
        print(line, file=stream or sys.stderr)


def print_warnings(source: str | Path, warnings: Iterable[Problem]) -> None:
    """Print what may fail on the server but refuses nothing, one line each, to stderr."""
    for warning in warnings:
        where = f"{warning.path}: " if warning.path else ""
        print(f"{source}: {where}warning: {warning.message}", file=sys.stderr)


def describe_os_error(error: OSError) -> str:
    """Say what the machine refused as ``<path>: <reason>`` (the path when there is one)."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename is None:
        return reason
    return f"{os.fsdecode(error.filename)}: {reason}"


def non_negative_int(text: str) -> int:
    """Read a whole number of zero or more from the command line (argparse's ``type=``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value
