"""The `review`, `mark` and `unmark` commands, and `run --review`'s page."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from kling_pipe._backends.origins import add_backend_arguments, origin_from
from kling_pipe._cli.common import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, Formatter, examples
from kling_pipe.exceptions import KlingPipeError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from kling_pipe._review.serve import ReviewThread
    from kling_pipe._shotlist.specs import ShotList


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `review` to the command line."""
    review = commands.add_parser(
        "review",
        formatter_class=Formatter,
        help="review in the browser: watch shots land, compare takes, pick and approve",
        description=(
            "Serve a live page of the storyboard on 127.0.0.1 and open it in the browser:\n"
            "every shot in storyboard order with its takes and versions side by side, the\n"
            "current one marked, its prompt, duration, cost, status and task. While a run\n"
            "of the same shot list goes on, shots land on the page as they are rendered.\n"
            "Buttons pick a take, approve and unapprove, doing exactly what `pick`,\n"
            "`approve` and `unapprove` do (a pick shows what it makes stale first). Keys:\n"
            "j/k or arrows, 1-8 to pick, a to approve, space to play. Reads the records\n"
            "alone (source images may be missing). The URL printed carries a secret token:\n"
            "anyone with it can pick and approve. Ctrl-C stops it. Sends nothing, pays\n"
            "nothing."
        ),
        epilog=examples(
            "kling-pipe review specs/takes.toml",
            "kling-pipe review specs/takes.toml --no-open --port 8765",
        ),
    )
    review.add_argument("file", type=Path, metavar="FILE", help="shot list")
    add_review_arguments(review)
    add_backend_arguments(review)
    review.set_defaults(handler=_cmd_review)

    for name, handler, help_, description in (
        (
            "mark",
            _cmd_mark,
            "mark a shot for re-render: the next run renders it again",
            (
                "Mark SHOT for re-render: the next full `run` renders it again, every take\n"
                "(approved or not), as --rerender SHOT would, and the shots chained from it;\n"
                "`plan` prices it. The mark is kept beside the records\n"
                "(<shot list>.kling-state/rerender.json) until a run renders the shot again\n"
                "or `unmark` takes it back; a run with --only leaves it. Sends nothing, pays\n"
                'nothing. The review page\'s "Mark for re-render" button does the same.'
            ),
        ),
        (
            "unmark",
            _cmd_unmark,
            "take back a shot's mark for re-render",
            "Take back SHOT's mark for re-render: the next run leaves it as it is.",
        ),
    ):
        command = commands.add_parser(
            name,
            formatter_class=Formatter,
            help=help_,
            description=description,
            epilog=examples(f"kling-pipe {name} specs/takes.toml river"),
        )
        command.add_argument("file", type=Path, metavar="FILE", help="shot list")
        command.add_argument("shot", metavar="SHOT", help="the shot's id")
        add_backend_arguments(command)
        command.set_defaults(handler=handler)


def _cmd_mark(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.rerender import format_marked, mark_for_rerender  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    done = mark_for_rerender(shotlist, args.shot, origin=origin_from(args))
    print(format_marked(done, f"kling-pipe run {args.file}"))
    return EXIT_OK


def _cmd_unmark(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.rerender import format_marked, unmark  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    done = unmark(shotlist, args.shot, origin=origin_from(args))
    print(format_marked(done, f"kling-pipe run {args.file}"))
    return EXIT_OK


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--port`` and ``--no-open`` (`review`, and `run` with ``--review``)."""
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="N",
        help="serve on this port (default: a free one)",
    )
    parser.add_argument(
        "--no-open", action="store_true", help="only print the page's URL; open no browser"
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: a port is 0 to 65535")
    return value


def _announce(url: str, *, no_open: bool) -> None:
    from kling_pipe._review.serve import open_browser  # noqa: PLC0415

    print(f"review: {url}", file=sys.stderr, flush=True)
    print("review: the URL's token lets its holder pick and approve; Ctrl-C stops", file=sys.stderr)
    if not no_open:
        open_browser(url)


def _cmd_review(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - each command loads what it uses
    import concurrent.futures  # noqa: PLC0415

    from kling_pipe._review.board import read_board  # noqa: PLC0415 - each loads its own
    from kling_pipe._review.serve import serve_forever  # noqa: PLC0415
    from kling_pipe._review.server import Review, ReviewSite  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    read_board(shotlist, origin)  # records that cannot be read: one line, exit 2, no server
    site = ReviewSite(Review(shotlist, origin), args.port)
    started: concurrent.futures.Future[str] = concurrent.futures.Future()
    started.add_done_callback(
        lambda f: None if f.exception() else _announce(f.result(), no_open=args.no_open)
    )
    try:
        asyncio.run(serve_forever(site, started))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED if not started.done() else EXIT_OK
    except OSError as error:
        print(
            f"{args.file}: review: cannot serve on port {args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_INVALID
    return EXIT_OK


def start_for_run(shotlist: ShotList, args: argparse.Namespace) -> ReviewThread:
    """Serve the review page beside `run --review` (the caller stops it)."""
    from kling_pipe._review.serve import ReviewThread  # noqa: PLC0415

    thread = ReviewThread(shotlist, origin_from(args), port=args.port)
    try:
        url = thread.start()
    except OSError as error:  # before anything is rendered: nothing spent
        raise KlingPipeError(
            f"{args.file}: review: cannot serve on port {args.port}: {error.strerror}; "
            "nothing was rendered"
        ) from None
    _announce(url, no_open=args.no_open)
    return thread


def stopped_on_error(
    thread: ReviewThread,
) -> Callable[[type[BaseException] | None, BaseException | None, TracebackType | None], bool]:
    """Return an exit callback that stops the page when the run ends in an error (it propagates)."""

    def stop(
        kind: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> bool:
        if kind is not None:
            thread.stop()
        return False

    return stop


def keep_serving(thread: ReviewThread) -> None:
    """After the run: keep the page up for picking and approving, until Ctrl-C."""
    print("review: the page stays up to pick and approve; Ctrl-C stops it", file=sys.stderr)
    forever = threading.Event()  # nobody sets it: the wait lasts until Ctrl-C
    try:
        while not forever.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        thread.stop()
