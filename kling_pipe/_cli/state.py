"""The `status`, `pick` and `gc` commands: what the records say, choosing a take, cleaning up."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from kling_pipe._backends.origins import add_backend_arguments, origin_from, origin_kind
from kling_pipe._cli.common import EXIT_OK, Formatter, examples
from kling_pipe.exceptions import KlingPipeError

if TYPE_CHECKING:
    from kling_pipe._shotlist.specs import ShotList


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status`, `pick` and `gc` to the command line."""
    status = commands.add_parser(
        "status",
        formatter_class=Formatter,
        help="show each shot: cached, stale and why, pending, in flight, failed, uncertain",
        description=(
            "Show what the records beside a shot list say about each shot: cached (its\n"
            "video is on disk, unchanged), stale (an input changed: which), pending (never\n"
            "rendered), in flight (a task from an earlier run), refetch (rendered, but the\n"
            "file is missing), failed, uncertain (a lost submit the history could not\n"
            "settle), renamed (its render taken over from an id no longer in the list) or\n"
            "copied (same inputs as another shot: a copy of its render, nothing to pay).\n"
            "A shot of several takes gets a line per take, the picked one marked.\n"
            "Then the money spent so far and still to spend. Sends nothing."
        ),
        epilog=examples(
            "kling-pipe status specs/demo.toml", "kling-pipe status specs/demo.toml --json"
        ),
    )
    status.add_argument("file", type=Path, metavar="FILE", help="shot list")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_backend_arguments(status)
    status.set_defaults(handler=_cmd_status)

    pick = commands.add_parser(
        "pick",
        formatter_class=Formatter,
        help="make one take of a shot the shot's video (pays nothing, works offline)",
        description=(
            "Make take TAKE (1-based) of shot SHOT the picked one: <output_dir>/<id>.mp4\n"
            "becomes that take (the other takes stay in <output_dir>/takes/), and the pick\n"
            "is written to the lock file, to commit and review with the storyboard. Shots\n"
            "chained from SHOT take their frame from the picked take: they are named with\n"
            "what rendering them again costs, and the next `run` renders them. Sends\n"
            "nothing and pays nothing. Exit 2 for an unknown shot or take, or a take that\n"
            "is not rendered yet."
        ),
        epilog=examples(
            "kling-pipe pick specs/takes.toml storm 2",
            "kling-pipe pick specs/takes.toml storm 2 --backend wavespeed   # the real renders",
        ),
    )
    pick.add_argument("file", type=Path, metavar="FILE", help="shot list")
    pick.add_argument("shot", metavar="SHOT", help="the shot's id")
    pick.add_argument("take", type=_take_number, metavar="TAKE", help="the take to pick, from 1")
    pick.add_argument("--json", action="store_true", help="print what the pick did as JSON")
    add_backend_arguments(pick)
    pick.set_defaults(handler=_cmd_pick)

    gc = commands.add_parser(
        "gc",
        formatter_class=Formatter,
        help="remove outputs no shot of the list needs any more",
        description=(
            "Remove files kling-pipe wrote for this shot list that no current shot needs:\n"
            "videos of earlier versions of a shot or of shots no longer in the list (the\n"
            "bundled mock's and real ones alike), their frames and thumbnails. Worked out\n"
            "from the records, never from the folder's contents: a file kling-pipe did not\n"
            "write, or that changed since, is never touched. Refuses while a run of the\n"
            "same shot list is going on."
        ),
        epilog=examples("kling-pipe gc specs/demo.toml --dry-run", "kling-pipe gc specs/demo.toml"),
    )
    gc.add_argument("file", type=Path, metavar="FILE", help="shot list")
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    gc.set_defaults(handler=_cmd_gc)


def _cmd_status(args: argparse.Namespace) -> int:
    # Each command loads what it uses, so that `kling-pipe --version` stays light.
    from kling_pipe._decisions.plan import plan  # noqa: PLC0415
    from kling_pipe._records.assessment import (  # noqa: PLC0415
        assess_shotlist,
        existing_store,
        image_hashes,
        is_simulated,
        read_lock_of,
        records_notes,
    )
    from kling_pipe._records.status import (  # noqa: PLC0415
        format_status,
        status_as_json,
        status_lines,
    )
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415
    from kling_pipe._shotlist.rules import ZERO_USD  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    lock = read_lock_of(shotlist)
    with existing_store(shotlist) as store:
        images = image_hashes(shotlist, store, lock)
        assessment = assess_shotlist(shotlist, store, origin=origin, lock=lock, hash_file=images)
        spent = store.spent(origin) if store is not None else ZERO_USD
    p = plan(
        shotlist,
        statuses=assessment.statuses,
        picks=assessment.picks,
        fingerprints=assessment.fingerprints,
    )
    lines = status_lines(shotlist, assessment, p, images, _not_current(shotlist, origin))
    # Records found under an old name, lock entries that are not records: shown, not hidden.
    notes = records_notes(shotlist, lock)
    if args.json:
        document = {
            "storyboard": shotlist.storyboard.name,
            "shots": [status_as_json(r) for r in lines],
            "spent": str(spent),
            "to_spend": str(p.total_cost),
            "origin": origin,
            "backend": origin_kind(origin),
            "simulated": is_simulated(origin),
            "notes": notes,
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_status(shotlist, lines, spent=spent, plan=p, origin=origin, notes=notes))
    return EXIT_OK


def _take_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a take number (1, 2, ...)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: takes are numbered from 1")
    return value


def _cmd_pick(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.picks import format_pick, pick_take  # noqa: PLC0415 - see _cmd_status
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    result = pick_take(shotlist, args.shot, args.take, origin=origin_from(args))
    if args.json:
        print(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
    else:
        command = f"kling-pipe run {args.file}"
        if args.backend != "mock":
            command += f" --backend {args.backend}"
            if args.base_url:  # the same renders: a local server's are not WaveSpeed's
                command += f" --base-url {args.base_url}"
        print(format_pick(result, command))
    return EXIT_OK


def _not_current(shotlist: ShotList, origin: str) -> dict[str, str]:
    """Name the shots whose ``<id>.mp4`` `cut` and `export` would refuse, and why.

    The one rule (`kling_pipe._outputs.current`), so `status` never calls a shot cached that
    `cut` refuses. A folder another shot list owns is `cut`'s to refuse, not `status`'s.
    """
    from kling_pipe._outputs.current import shot_videos  # noqa: PLC0415 - see _cmd_status

    try:
        videos = shot_videos(shotlist, origin)
    except KlingPipeError:
        return {}
    return {v.shot.id: v.reason for v in videos if v.state == "stale"}


def _cmd_gc(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.folders import collect_garbage  # noqa: PLC0415 - see _cmd_status
    from kling_pipe._records.assessment import existing_store  # noqa: PLC0415
    from kling_pipe._records.store import RunLock  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    removed: list[Path] = []  # no records: nothing kling-pipe wrote, nothing to remove
    with existing_store(shotlist, writable=not args.dry_run) as store:
        if store is not None and args.dry_run:
            # Only reads: not even the run lock's pid file is written.
            removed = collect_garbage(shotlist, store, dry_run=True)
        elif store is not None:
            with RunLock(store.folder):
                removed = collect_garbage(shotlist, store, dry_run=False)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} file{'s' * (len(removed) != 1)}")
    return EXIT_OK
