"""The `kling-pipe` command: parse arguments, call the library, print, return an exit code.

Exit codes are a contract: 0 success, 1 some shots failed, 2 invalid input or a refused
plan, 130 interrupted. A user's mistake is printed as one line per problem, never as a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kling_pipe import __version__
from kling_pipe.exceptions import KlingPipeError, ShotListError
from kling_pipe.loader import load
from kling_pipe.plan import format_plan, plan, plan_as_json

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

_Formatter = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser; every command's help ends with an example."""
    parser = argparse.ArgumentParser(
        prog="kling-pipe",
        formatter_class=_Formatter,
        description=(
            "Render a TOML shot list into video shots with Kling Video O1 (Standard) "
            "through WaveSpeed.\nValidated and priced before a cent is spent."
        ),
        epilog=(
            "examples:\n"
            "  kling-pipe validate specs/demo.toml\n"
            "  kling-pipe plan specs/demo.toml\n"
            "  kling-pipe mock --port 8089"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        formatter_class=_Formatter,
        help="check shot lists against every rule, spending nothing",
        description=(
            "Check each shot list against every rule of the shot-list format and report\n"
            "every problem at once, one line each: file, key path, shot id, what is allowed.\n"
            "Local images are checked by content, size and dimensions. Exit 0 when all\n"
            "files are valid, 2 otherwise."
        ),
        epilog=(
            "examples:\n"
            "  kling-pipe validate specs/demo.toml\n"
            "  kling-pipe validate specs/*.toml --json   # problems as data, for editors"
        ),
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE", help="shot list(s)")
    validate.add_argument(
        "--json", action="store_true", help="print problems as a JSON list of objects"
    )
    validate.set_defaults(handler=_cmd_validate)

    plan_cmd = commands.add_parser(
        "plan",
        formatter_class=_Formatter,
        help="show what a run would render, in what order, and what it costs",
        description=(
            "Show the shots a run would render, in the order they can start (a chained\n"
            "shot after its source), with each shot's cost and the total. USD 0.084 per\n"
            "second of video, computed exactly. Exit 2 if the shot list is invalid or the\n"
            "plan costs more than max_cost."
        ),
        epilog=(
            "examples:\n"
            "  kling-pipe plan specs/demo.toml\n"
            "  kling-pipe plan specs/demo.toml --json\n"
            "  kling-pipe plan specs/demo.toml --retry-failed 1   # show the worst case"
        ),
    )
    plan_cmd.add_argument("file", type=Path, metavar="FILE", help="shot list")
    plan_cmd.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan_cmd.add_argument(
        "--retry-failed",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="show the worst case if every shot failed and was resubmitted N times",
    )
    plan_cmd.set_defaults(handler=_cmd_plan)

    _add_mock_command(commands)
    return parser


def _add_mock_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mockserver import cli as mock_cli  # noqa: PLC0415 - keeps other commands light

    mock = commands.add_parser(
        "mock",
        formatter_class=_Formatter,
        help="serve the bundled WaveSpeed mock on loopback (offline, free)",
        description=(
            "Serve an imitation of WaveSpeed's v3 API on 127.0.0.1: tasks go created ->\n"
            "processing -> completed, outputs are real MP4 files, faults can be injected.\n"
            "Point any WaveSpeed client at the printed base URL with the printed key."
        ),
        epilog="examples:\n  kling-pipe mock --port 8089\n  kling-pipe mock --processing 2",
    )
    mock_cli.add_arguments(mock)
    mock.set_defaults(handler=mock_cli.run)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _print_problems(error: ShotListError, stream: TextIO) -> None:
    for line in error.lines():
        print(line, file=stream)


def _cmd_validate(args: argparse.Namespace) -> int:
    found: list[dict[str, str]] = []
    for path in args.files:
        try:
            shotlist = load(path)
        except ShotListError as error:
            problems = error.problems
        else:
            budget = plan(shotlist).budget_problem()
            problems = () if budget is None else (budget,)
        if problems:
            error = ShotListError(str(path), problems)
            found.extend(
                {"file": str(path), "path": p.path, "message": p.message} for p in problems
            )
            if not args.json:
                _print_problems(error, sys.stderr)
        elif not args.json:
            seconds = sum(s.duration for s in shotlist.shots)
            cost = plan(shotlist).total_cost
            print(f"{path}: ok ({len(shotlist.shots)} shots, {seconds} s, {cost} USD)")
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
    return EXIT_INVALID if found else EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    try:
        shotlist = load(args.file)
    except ShotListError as error:
        _print_problems(error, sys.stderr)
        return EXIT_INVALID
    p = plan(shotlist, retry_failed=args.retry_failed)
    if args.json:
        print(json.dumps(plan_as_json(p), indent=2, ensure_ascii=False))
    else:
        print(format_plan(p))
    problem = p.budget_problem()
    if problem is not None:
        print(f"{args.file}: {problem}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KlingPipeError as error:
        print(f"kling-pipe: {error}", file=sys.stderr)
        return EXIT_INVALID
    return code
