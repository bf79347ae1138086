"""The `kling-pipe` command: parse arguments, call the library, print, return an exit code.

The exit codes are `kling_pipe._cli.common`'s. A user's mistake, or the machine's, is printed
as one line, never as a traceback. Results go to stdout; progress, logs and errors to stderr.
Each command imports what it needs when it runs, so `--version` and `validate` load neither
the HTTP client, nor the records, nor the live display.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kling_pipe._backends.base import MOCK_FPS, MOCK_MAX_FPS, MOCK_PROCESSING_S
from kling_pipe._backends.origins import (
    add_backend_arguments,
    describe_origin,
    origin_from,
    origin_kind,
)
from kling_pipe._cli import adopt as cli_adopt
from kling_pipe._cli import money as cli_money
from kling_pipe._cli import review as cli_review
from kling_pipe._cli import state as cli_state
from kling_pipe._cli import tools as cli_tools
from kling_pipe._cli import versions as cli_versions
from kling_pipe._cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    Formatter,
    describe_os_error,
    examples,
    non_negative_int,
    print_problems,
    print_warnings,
)
from kling_pipe._decisions.settle import ACT_WINDOW, HISTORY_LAG
from kling_pipe.exceptions import KlingPipeError, ShotListError

if TYPE_CHECKING:
    from kling_pipe._decisions.plan import Plan
    from kling_pipe._decisions.quotes import QuoteCheck
    from kling_pipe._running.scheduler import Reporter
    from kling_pipe._shotlist.specs import ShotList


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser; every command's help ends with an example."""
    parser = argparse.ArgumentParser(
        prog="kling-pipe",
        formatter_class=Formatter,
        description=(
            "Render a TOML shot list into video shots with Kling Video O1 (Standard) "
            "through WaveSpeed.\nValidated and priced before a cent is spent."
        ),
        epilog=examples(
            "kling-pipe validate specs/demo.toml",
            "kling-pipe plan specs/demo.toml",
            "kling-pipe run specs/demo.toml",
            "kling-pipe mock --port 8089",
        ),
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        formatter_class=Formatter,
        help="check shot lists against every rule, spending nothing",
        description=(
            "Check each shot list against every rule of the shot-list format and report\n"
            "every problem at once, one line each: file, key path, shot id, what is allowed.\n"
            "Local images are checked by content, size and dimensions. Exit 0 when all\n"
            "files are valid, 2 otherwise."
        ),
        epilog=examples(
            "kling-pipe validate specs/demo.toml",
            "kling-pipe validate specs/*.toml --json   # problems as data, for editors",
        ),
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE", help="shot list(s)")
    validate.add_argument(
        "--json", action="store_true", help="print problems as a JSON list of objects"
    )
    validate.set_defaults(handler=_cmd_validate)

    plan_cmd = commands.add_parser(
        "plan",
        formatter_class=Formatter,
        help="show what a run would render, in what order, and what it costs",
        description=(
            "Show the shots a run would render, in the order they can start (a chained\n"
            "shot after its source), with each shot's cost and the total. USD 0.084 per\n"
            "second of video, computed exactly; a shot of N takes costs N renders. With\n"
            "--only, just those shots and the chain sources they need (named and priced).\n"
            "With a budget in the storyboard: spent so far, this run, what is left. Exit 2\n"
            "if the shot list is invalid, or the plan costs more than max_cost or passes\n"
            "the budget."
        ),
        epilog=examples(
            "kling-pipe plan specs/demo.toml",
            "kling-pipe plan specs/demo.toml --only river   # one shot first: what it costs",
            "kling-pipe plan specs/demo.toml --json",
            "kling-pipe plan specs/demo.toml --retry-failed 1   # show the worst case",
        ),
    )
    plan_cmd.add_argument("file", type=Path, metavar="FILE", help="shot list")
    plan_cmd.add_argument("--json", action="store_true", help="print the plan as JSON")
    _add_only_argument(plan_cmd)
    add_backend_arguments(plan_cmd)
    plan_cmd.add_argument(
        "--retry-failed",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="show the worst case if every shot failed and was resubmitted N times",
    )
    plan_cmd.set_defaults(handler=_cmd_plan)

    _add_run_command(commands)
    cli_state.add_commands(commands)
    cli_adopt.add_commands(commands)
    cli_versions.add_commands(commands)
    cli_tools.add_commands(commands)
    cli_money.add_commands(commands)
    cli_review.add_commands(commands)
    _add_mock_command(commands)
    return parser


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        formatter_class=Formatter,
        help="render every shot (offline against the bundled mock by default)",
        description=(
            "Render every shot of a shot list and write <output_dir>/<shot id>.mp4.\n"
            "By default against the bundled WaveSpeed mock, offline and free. With\n"
            "--backend wavespeed it spends real money: the key comes from WAVESPEED_API_KEY,\n"
            "the plan's cost is shown and must be confirmed (--yes without a terminal).\n"
            "Try one shot before paying for all: --only ID renders just that shot (and the\n"
            "chain sources it needs); the others are left as they are.\n"
            "Exit 0 when every shot is done, 1 when some failed, 2 for invalid input or a\n"
            "refused plan, 130 after Ctrl-C (the first stops submitting and cancels cleanly,\n"
            "a second exits at once)."
        ),
        epilog=examples(
            "kling-pipe run specs/demo.toml",
            "kling-pipe run specs/demo.toml --only river --backend wavespeed   # one shot first",
            "kling-pipe run specs/demo.toml --only 'harbour-*' storm#2   # globs and takes",
            "kling-pipe run specs/demo.toml --concurrency 2 --json",
            "kling-pipe run specs/demo.toml --rerender river   # and the shots chained from it",
            "kling-pipe run specs/demo.toml --locked           # CI: spend nothing new",
            "WAVESPEED_API_KEY=... kling-pipe run specs/demo.toml --backend wavespeed --rate 5",
        ),
    )
    run.add_argument("file", type=Path, metavar="FILE", help="shot list")
    add_backend_arguments(
        run, "where to render: the bundled mock (default) or the real WaveSpeed API"
    )
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="shots in flight at once (else the storyboard's, else 4)",
    )
    run.add_argument(
        "--max-cost",
        type=_money,
        metavar="USD",
        help="refuse a plan over this, for this run (overrides max_cost; budget still holds)",
    )
    _add_only_argument(run)
    run.add_argument(
        "--rate", type=_positive_int, metavar="N", help="submit at most N tasks per minute"
    )
    run.add_argument(
        "--retry-failed",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="resubmit a task that failed on the server up to N times (each costs money)",
    )
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="start no new shot after the first failure (running ones finish)",
    )
    run.add_argument(
        "--task-timeout",
        type=_positive_float,
        default=3600.0,
        metavar="SECONDS",
        help="longest wait for one task to finish (default 3600)",
    )
    run.add_argument(
        "--act-window",
        type=_positive_float,
        default=ACT_WINDOW.total_seconds(),
        metavar="SECONDS",
        help=(
            "a submit whose answer is lost: the longest the API may take to create its task "
            "(default %(default)g); nothing is resent before this and --history-lag pass"
        ),
    )
    run.add_argument(
        "--history-lag",
        type=_positive_float,
        default=HISTORY_LAG.total_seconds(),
        metavar="SECONDS",
        help="how late a new task may appear in WaveSpeed's history (default %(default)g)",
    )
    run.add_argument(
        "--mock-processing",
        type=_positive_float,
        default=MOCK_PROCESSING_S,
        metavar="SECONDS",
        help=f"with the mock: how long each task takes (default {MOCK_PROCESSING_S:g})",
    )
    run.add_argument(
        "--fps",
        type=_frame_rate,
        metavar="N",
        help=f"with the mock: frames per second of its renders (default {MOCK_FPS})",
    )
    run.add_argument(
        "--caption",
        action="store_true",
        help="with the mock: write each shot's prompt (and #2 for a second take) on its frames",
    )
    run.add_argument(
        "--rerender",
        nargs="+",
        default=[],
        metavar="ID",
        help=(
            "render these shots again (and the shots chained from them), even if cached; "
            "ID#K names take K alone"
        ),
    )
    run.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="submit again shots whose earlier submit was lost and could not be found",
    )
    run.add_argument(
        "--locked",
        action="store_true",
        help="refuse to render anything the lock file does not already cover (for CI)",
    )
    run.add_argument(
        "--no-report",
        action="store_true",
        help="skip writing the contact sheet (index.html) at the end; `report` writes it later",
    )
    run.add_argument(
        "--review",
        action="store_true",
        help="serve the live review page during the run, and after it until Ctrl-C",
    )
    cli_review.add_review_arguments(run)
    run.add_argument("--yes", action="store_true", help="spend without asking (real backend)")
    run.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    noise = run.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    noise.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv: HTTP detail)"
    )
    run.set_defaults(handler=_cmd_run)


def _add_only_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="ID",
        help=(
            "only these shots: ids, ID#K for one take, globs such as 'harbour-*'; the chain "
            "sources they need come along (named and priced), the rest is left as it is"
        ),
    )


def _add_mock_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The mock's own parser is built only when `mock` runs: every other command stays light.
    mock = commands.add_parser(
        "mock",
        add_help=False,
        help="serve the bundled WaveSpeed mock on loopback (offline, free)",
    )
    mock.add_argument("mock_args", nargs=argparse.REMAINDER)
    mock.set_defaults(handler=_cmd_mock)


def _cmd_mock(args: argparse.Namespace) -> int:
    from mockserver import cli as mock_cli  # noqa: PLC0415 - keeps other commands light

    parser = argparse.ArgumentParser(
        prog="kling-pipe mock",
        formatter_class=Formatter,
        description=(
            "Serve an imitation of WaveSpeed's v3 API on 127.0.0.1: tasks go created ->\n"
            "processing -> completed, outputs are real MP4 files, faults can be injected.\n"
            "Point any WaveSpeed client at the printed base URL with the printed key: a new\n"
            "random one each start, or the one given with --api-key (never printed). It never\n"
            "reads WAVESPEED_API_KEY. Exit 2 for a bad option or a port in use."
        ),
        epilog=examples("kling-pipe mock --port 8089", "kling-pipe mock --processing-s 2"),
    )
    mock_cli.add_arguments(parser)
    return mock_cli.run(parser.parse_args(args.mock_args))


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (it costs a metadata scan)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,  # noqa: ARG002 - argparse's signature
        values: object,  # noqa: ARG002
        option_string: str | None = None,  # noqa: ARG002
    ) -> None:
        from kling_pipe._version import __version__  # noqa: PLC0415

        print(f"{parser.prog} {__version__}")
        parser.exit()


def _positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def _frame_rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MOCK_MAX_FPS:
        raise argparse.ArgumentTypeError(f"{text}: frames per second are 1 to {MOCK_MAX_FPS}")
    return value


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be zero or a positive amount")
    return value


def _cmd_validate(args: argparse.Namespace) -> int:
    from kling_pipe import _files  # noqa: PLC0415 - each command loads what it uses
    from kling_pipe._decisions.plan import plan  # noqa: PLC0415
    from kling_pipe._shotlist.fingerprint import fingerprint_units  # noqa: PLC0415
    from kling_pipe._shotlist.loader import gc_paused, load  # noqa: PLC0415

    found: list[dict[str, str]] = []
    for path in args.files:
        with gc_paused():  # a shot list's values and its plan hold no cycles to collect
            try:
                shotlist = load(path)
            except ShotListError as invalid:
                problems = invalid.problems
                print_warnings(invalid.source, invalid.warnings)
            else:
                print_warnings(shotlist.source, shotlist.warnings)
                # Priced as `run` renders it: identical shots once (the others are copies).
                units = fingerprint_units(shotlist, _files.sha256_file)
                priced = plan(shotlist, fingerprints=units.fingerprints)
                budget = priced.budget_problem()
                problems = () if budget is None else (budget,)
        if problems:
            found.extend(
                {"file": str(path), "path": p.path, "message": p.message} for p in problems
            )
            if not args.json:
                print_problems(ShotListError(str(path), problems))
        elif not args.json:
            seconds = sum(s.duration * s.takes for s in shotlist.shots)  # every take is video
            unpriced = len(priced.unpriced)
            more = f" + {unpriced} at an unconfirmed price" if unpriced else ""
            print(
                f"{path}: ok ({len(shotlist.shots)} shots, {seconds} s, "
                f"{priced.total_cost} USD{more})"
            )
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
    return EXIT_INVALID if found else EXIT_OK


def _print_account_limit(origin: str, concurrency: int | None) -> None:
    """Say so when the account processes fewer tasks at once than a run would keep going."""
    from kling_pipe._records.registry import known_account_limit  # noqa: PLC0415
    from kling_pipe._running.options import DEFAULT_CONCURRENCY  # noqa: PLC0415

    known = known_account_limit(origin)
    wanted = concurrency or DEFAULT_CONCURRENCY
    if known is not None and known[0] < wanted:
        limit, when = known
        print(
            f"limited by the account: it processed {limit} task{'s' * (limit != 1)} at once "
            f"when last run ({when:%Y-%m-%d}), below concurrency {wanted}; a run keeps "
            f"{limit} rendering (more would only wait on the server)"
        )


def _cmd_plan(args: argparse.Namespace) -> int:
    from kling_pipe._backends.prices import price_for  # noqa: PLC0415
    from kling_pipe._decisions.plan import (  # noqa: PLC0415
        plan,
        plan_as_json,
        unpriced_problem,
    )
    from kling_pipe._outputs.rerender import marks_in_force  # noqa: PLC0415
    from kling_pipe._records.assessment import (  # noqa: PLC0415
        assess_shotlist,
        existing_store,
        read_lock_of,
        records_notes,
    )
    from kling_pipe._records.spending import spent_on_storyboard  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415 - each command loads what it uses

    shotlist = load(args.file)
    print_warnings(shotlist.source, shotlist.warnings)
    origin = origin_from(args)
    lock = read_lock_of(shotlist)
    _print_notes(records_notes(shotlist, lock))
    # Takes marked for re-render are priced as the next full run renders them.
    marked = () if args.only else marks_in_force(shotlist, origin)
    with existing_store(shotlist) as store:
        assessment = assess_shotlist(shotlist, store, origin=origin, lock=lock, rerender=marked)
        spent = spent_on_storyboard(store, lock, origin)
        has_records = store is not None
    p = plan(
        shotlist,
        price=price_for(origin),
        statuses=assessment.statuses,
        picks=assessment.picks,
        retry_failed=args.retry_failed,
        only=args.only,
        spent=spent,
        notes=assessment.plan_notes(),
        fingerprints=assessment.fingerprints,
    )
    quotes = _quotes_for_plan(p, args, origin)
    if quotes is not None and not quotes.problems():
        from kling_pipe._decisions.quotes import quoted_price  # noqa: PLC0415

        p = plan(
            shotlist,
            statuses=assessment.statuses,
            picks=assessment.picks,
            retry_failed=args.retry_failed,
            only=args.only,
            spent=spent,
            notes=assessment.plan_notes(),
            fingerprints=assessment.fingerprints,
            price=quoted_price(quotes, price_for(origin)),
        )
    if args.json:
        document = plan_as_json(p)
        if quotes is not None:
            document["quotes"] = [line.describe() for line in quotes.lines]
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _print_plan_text(p, quotes, shotlist, origin, has_records=has_records)
    # Asked, WaveSpeed's quotes decide about a price nobody confirmed (`quotes.problems`).
    real_money = origin_kind(origin) == "wavespeed" and quotes is None
    unpriced = unpriced_problem(p, real_money=real_money)
    problems = [p.budget_problem(), p.film_budget_problem(), unpriced]
    problems += [] if quotes is None else quotes.problems()
    for problem in problems:
        if problem is not None:
            print(f"{args.file}: {problem}", file=sys.stderr)
    return EXIT_INVALID if any(problems) else EXIT_OK


def _print_plan_text(
    p: Plan,
    quotes: QuoteCheck | None,
    shotlist: ShotList,
    origin: str,
    *,
    has_records: bool,
) -> None:
    """Print the plan as people read it, with what priced it and against which backend."""
    from kling_pipe._backends.prices import stand_in_priced  # noqa: PLC0415
    from kling_pipe._decisions.plan import format_plan  # noqa: PLC0415
    from kling_pipe._records.assessment import is_simulated  # noqa: PLC0415

    print(format_plan(p))
    if has_records:  # a storyboard never run stays light: no database is opened
        _print_account_limit(origin, shotlist.storyboard.concurrency)
    if quotes is not None:
        print("\n".join(["quotes:", *(f"  {line.describe()}" for line in quotes.lines)]))
    if is_simulated(origin):
        print(
            "backend: the bundled mock; its renders go to the mock/ folder and its money "
            "is simulated (use --backend wavespeed to plan a real run)"
        )
    elif origin_kind(origin) == "local":
        print(_local_backend_line(origin))
    stand_in = stand_in_priced(shotlist.shots, origin)
    if stand_in:
        print(
            f"priced from the mock's own price list (WaveSpeed confirms no price): "
            f"{', '.join(stand_in)}"
        )


def _quotes_for_plan(p: Plan, args: argparse.Namespace, origin: str) -> QuoteCheck | None:
    """Against a server other than the bundled mock, ask its price for each distinct request.

    Only with the key at hand: a plan needs none, and without one it prices from the
    catalogue (as offline) and says that it asked nothing.
    """
    import asyncio  # noqa: PLC0415

    from kling_pipe._running.money import quote_plan  # noqa: PLC0415 - HTTP only when asked

    if args.backend != "mock" and not os.environ.get("WAVESPEED_API_KEY", "").strip():
        if p.to_render:
            print(
                "quotes: not asked (WAVESPEED_API_KEY is not set); the prices are the "
                "catalogue's, and `run` asks before it pays",
                file=sys.stderr,
            )
        return None
    if origin_kind(origin) != "mock":
        import stamina  # noqa: PLC0415 - the client logs its own line for each retry

        stamina.instrumentation.set_on_retry_hooks([])
    return asyncio.run(quote_plan(p, args.backend, args.base_url, None, origin=origin))


def _cmd_run(args: argparse.Namespace) -> int:
    import stamina  # noqa: PLC0415 - each command loads what it uses

    from kling_pipe._decisions.results import format_summary  # noqa: PLC0415
    from kling_pipe._decisions.settle import SettleOptions  # noqa: PLC0415
    from kling_pipe._records.assessment import read_lock_of, records_notes  # noqa: PLC0415
    from kling_pipe._running.options import RunOptions  # noqa: PLC0415
    from kling_pipe._running.progress import LineReporter, LiveReporter, QuietReporter  # noqa: PLC0415
    from kling_pipe._running.run import NotConfirmedError, render_sync  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    # stamina's own retry lines ("stamina.retry_scheduled") say neither what failed nor
    # when the next try is; the client logs its own line for each retry instead.
    stamina.instrumentation.set_on_retry_hooks([])
    _configure_logging(args.verbose, quiet=args.quiet)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if args.backend != "mock" and (args.fps is not None or args.caption):
        given = "--fps" if args.fps is not None else "--caption"
        print(
            f"{args.file}: {given} shapes the bundled mock's renders only; WaveSpeed's are "
            "Kling's own (leave it out, or drop --backend wavespeed)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    ask = args.backend == "wavespeed" and not args.yes
    if ask and not interactive:
        print(
            f"{args.file}: --backend wavespeed spends money; pass --yes to confirm "
            "when there is no terminal to ask on",
            file=sys.stderr,
        )
        return EXIT_INVALID
    options = RunOptions(
        concurrency=args.concurrency,
        max_cost=args.max_cost,
        rate_per_min=args.rate,
        retry_failed=args.retry_failed,
        fail_fast=args.fail_fast,
        task_timeout_s=args.task_timeout,
        settle=SettleOptions(
            act_window=timedelta(seconds=args.act_window),
            history_lag=timedelta(seconds=args.history_lag),
        ),
        rerender=args.rerender,
        only=args.only,
        resubmit_uncertain=args.resubmit_uncertain,
        locked=args.locked,
        report=not args.no_report,
        mock_processing_s=args.mock_processing,
        mock_fps=MOCK_FPS if args.fps is None else args.fps,
        mock_caption=args.caption,
        handle_signals=True,
    )
    shotlist = load(args.file)
    print_warnings(shotlist.source, shotlist.warnings)
    _print_notes(records_notes(shotlist, read_lock_of(shotlist)))
    use_live = interactive and not args.quiet and not args.verbose and not args.review
    review = cli_review.start_for_run(shotlist, args) if args.review else None
    with contextlib.ExitStack() as stack:
        if review is not None:  # stopped by an error; else kept up after the summary
            stack.push(cli_review.stopped_on_error(review))
        reporter: Reporter
        hold: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        if args.quiet:
            reporter = QuietReporter()
        elif use_live:
            # A row per take the run renders, as the run tells them (not the shot list's
            # takes: a kept pick is take 2 of a shot of one take).
            live = stack.enter_context(LiveReporter(shotlist.storyboard.name))
            reporter, hold = live, live.paused
        else:
            reporter = LineReporter(sys.stderr)
        confirm = functools.partial(_ask_to_spend, hold=hold) if ask else None
        try:
            result = render_sync(
                shotlist,
                backend=args.backend,
                base_url=args.base_url,
                options=options,
                reporter=reporter,
                confirm=confirm,
            )
        except NotConfirmedError as error:
            print(f"{args.file}: {error}", file=sys.stderr)
            return EXIT_INVALID
    # The summary is the run's result: stdout, so `run ... > log` keeps it. With --json the
    # JSON is all of stdout, and the summary goes with the progress to stderr.
    summary = format_summary(result)
    origin = origin_from(args)  # the origin `render` resolved from the same flags
    if origin_kind(origin) == "local":
        summary += "\n" + _local_backend_line(origin)
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        document = {**result.as_json(), "origin": origin, "backend": origin_kind(origin)}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    if review is not None:
        cli_review.keep_serving(review)
    return result.exit_code


def _local_backend_line(origin: str) -> str:
    """Say that a local server's renders and money are its own, never WaveSpeed's."""
    return (
        f"backend: {describe_origin(origin)}, not WaveSpeed: its renders and money are its "
        'own, kept under "local" in the lock file (WaveSpeed\'s: --backend wavespeed with '
        "WaveSpeed's base URL)"
    )


def _print_notes(notes: Sequence[str]) -> None:
    """Print lines about the records (found under an old name, not records) to stderr."""
    for note in notes:
        print(note, file=sys.stderr)


def _ask_to_spend(
    p: Plan, *, hold: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
) -> bool:
    """Show the plan and ask on the terminal whether to spend; only "y" or "yes" is yes.

    Plain text on stderr, as the plan (stdout may be a file: ``run --json > out``), with the
    live table held off the terminal meanwhile (*hold*). End of input (Ctrl-D) is no.
    """
    from kling_pipe._decisions.plan import format_plan  # noqa: PLC0415

    with hold():
        print(format_plan(p), file=sys.stderr)
        sys.stderr.write(f"Spend up to {p.worst_case_cost} USD on WaveSpeed? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:  # end of input: nobody said yes
            sys.stderr.write("\n")
    return answer.strip().lower() in {"y", "yes"}


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Log to `sys.stderr` as it is at each line, not as it was at start.

    The live table replaces `sys.stderr` while it runs, to print what is written there
    above itself; a handler holding the old stream would draw over the table instead.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        """Write *record* to the current `sys.stderr`."""
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(verbose: int, *, quiet: bool) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if verbose < 2:
        # aiohttp's own debug lines add nothing a user needs below -vv.
        logging.getLogger("aiohttp").setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["mock"]:  # the mock parses its own options (see _add_mock_command)
        args = argparse.Namespace(handler=_cmd_mock, mock_args=words[1:])
    else:
        args = build_parser().parse_args(words)
    try:
        code: int = args.handler(args)
        _flush_stdout()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_went_away()
    except ShotListError as error:
        # Every command reports a bad shot list the same way: one line per problem.
        print_problems(error)
        print_warnings(error.source, error.warnings)
        return EXIT_INVALID
    except KlingPipeError as error:
        print(f"kling-pipe: {error}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as error:
        # A read-only folder, a full disk, a file in the way: the machine's answer, in one line.
        print(f"kling-pipe: {describe_os_error(error)}", file=sys.stderr)
        _drop_unwritable_stdout()
        return EXIT_INVALID
    except _sqlite_errors() as error:
        # Locked by another process, a full disk, a damaged file: the records are SQLite.
        where = getattr(args, "file", None)
        prefix = f"{where}: " if where is not None else ""
        print(f"kling-pipe: {prefix}the run records could not be used: {error}", file=sys.stderr)
        return EXIT_INVALID
    return code


def _sqlite_errors() -> tuple[type[Exception], ...]:
    """SQLite's error class, once a command has loaded sqlite3 (before, it raised none).

    Called only when an exception reaches `main`, so no command loads sqlite3 for it.
    """
    sqlite3 = sys.modules.get("sqlite3")
    return () if sqlite3 is None else (sqlite3.Error,)


def _flush_stdout() -> None:
    """Flush stdout here, not at exit, so that a failure is reported like any other."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        # A full disk under `> file`: there is no file name to show, so name the stream.
        error.filename = "<stdout>"
        raise


def _drop_unwritable_stdout() -> None:
    """Discard what stdout still holds if it cannot be written (a full disk under `> file`).

    Otherwise the flush at exit fails again and prints "Exception ignored ..." after the
    one line that said it all.
    """
    try:
        sys.stdout.flush()
    except OSError:
        _point_at_devnull(sys.stdout)


def _point_at_devnull(*streams: TextIO) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in streams:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _reader_went_away() -> int:
    """Stop quietly once stdout's reader has gone (the Python docs' "Note on SIGPIPE")."""
    # Point stdout and stderr at /dev/null, so that the flush at exit cannot fail again
    # and print "Exception ignored ... BrokenPipeError" after we have returned.
    _point_at_devnull(sys.stdout, sys.stderr)
    return EXIT_BROKEN_PIPE
