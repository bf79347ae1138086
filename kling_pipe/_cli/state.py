"""The `status`, `pick` and `gc` commands: what the records say, choosing a take, cleaning up."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kling_pipe._backends.origins import add_backend_arguments, origin_from, origin_kind
from kling_pipe._cli.common import EXIT_OK, Formatter, examples, non_negative_int
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
            "settle), expired (finished, never downloaded, and gone from WaveSpeed after\n"
            "its 7 days: --rerender ID pays for it anew), renamed (its render taken over\n"
            "from an id no longer in the list), copied (same inputs as another shot: a copy\n"
            "of its render, nothing to pay) or approved (frozen; 'inputs changed: prompt'\n"
            "once they did since).\n"
            "A shot of several takes gets a line per take, the picked one marked; a shot\n"
            "of several versions lists them, the current and the approved one marked.\n"
            "Then the money spent so far and still to spend (with a budget in the storyboard,\n"
            "what is left of it) and tasks whose output WaveSpeed is about to drop. Sends\n"
            "nothing."
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
            "becomes a copy of that take (every take stays in <output_dir>/versions/), and\n"
            "the pick is written to the lock file, to commit and review with the storyboard.\n"
            "Shots chained from SHOT take their frame from the picked take: they are named\n"
            "with what rendering them again costs, and the next `run` renders them. Sends\n"
            "nothing and pays nothing. Exit 2 for an unknown shot or take, a take that is\n"
            "not rendered yet, or an approved shot (unapprove it first)."
        ),
        epilog=examples(
            "kling-pipe pick specs/takes.toml river 2",
            "kling-pipe pick specs/takes.toml river 2 --backend wavespeed   # the real renders",
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
            "copies and takes of shots no longer in the list (the bundled mock's and real\n"
            "ones alike), their frames and thumbnails. Versions (versions/<id>.v<N>.mp4,\n"
            "every render a shot ever had) are kept: only --versions or --keep-last N\n"
            "removes them, and never the current, approved or picked one. Worked out from\n"
            "the records, never from the folder's contents: a file kling-pipe did not\n"
            "write, or that changed since, is never touched. Refuses while a run of the\n"
            "same shot list is going on."
        ),
        epilog=examples(
            "kling-pipe gc specs/demo.toml --dry-run",
            "kling-pipe gc specs/demo.toml",
            "kling-pipe gc specs/demo.toml --keep-last 3 --dry-run   # older versions too",
        ),
    )
    gc.add_argument("file", type=Path, metavar="FILE", help="shot list")
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    old = gc.add_mutually_exclusive_group()
    old.add_argument(
        "--versions",
        action="store_true",
        help="also remove every version that is not current, approved or picked",
    )
    old.add_argument(
        "--keep-last",
        type=non_negative_int,
        metavar="N",
        help="also remove versions, but keep each shot's last N (and the current, approved, "
        "picked ones)",
    )
    gc.set_defaults(handler=_cmd_gc)


def _cmd_status(args: argparse.Namespace) -> int:
    # Each command loads what it uses, so that `kling-pipe --version` stays light.
    from kling_pipe._backends.prices import price_for  # noqa: PLC0415
    from kling_pipe._decisions.expiry import expiry_warnings  # noqa: PLC0415
    from kling_pipe._decisions.plan import budget_as_json, format_budget, plan  # noqa: PLC0415
    from kling_pipe._records.assessment import (  # noqa: PLC0415
        assess_shotlist,
        existing_store,
        image_hashes,
        is_simulated,
        read_lock_of,
        records_notes,
    )
    from kling_pipe._records.spending import spent_on_storyboard  # noqa: PLC0415
    from kling_pipe._records.status import (  # noqa: PLC0415
        format_status,
        status_as_json,
        status_lines,
    )
    from kling_pipe._records.versions import shot_versions  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415
    from kling_pipe._shotlist.rules import ZERO_USD  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    lock = read_lock_of(shotlist)
    with existing_store(shotlist) as store:
        images = image_hashes(shotlist, store, lock)
        assessment = assess_shotlist(shotlist, store, origin=origin, lock=lock, hash_file=images)
        spent = store.spent(origin) if store is not None else ZERO_USD
        film_spent = spent_on_storyboard(store, lock, origin)
        versions = shot_versions(shotlist, store, assessment)
    p = plan(
        shotlist,
        price=price_for(origin),
        statuses=assessment.statuses,
        picks=assessment.picks,
        spent=film_spent,
        notes=assessment.plan_notes(),
        fingerprints=assessment.fingerprints,
    )
    lines = status_lines(
        shotlist,
        assessment,
        p,
        images,
        versions=versions,
        not_current=_not_current(shotlist, origin),
    )
    # Records found under an old name, lock entries that are not records: shown, not hidden.
    notes = records_notes(shotlist, lock)
    # Outputs WaveSpeed is about to drop (or has dropped) that were never downloaded.
    expiring = expiry_warnings(assessment.resume.values(), datetime.now(UTC))
    notes += [w.describe() for w in expiring]
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
            "expiring": [
                {"id": w.unit, "task_id": w.task_id, "expires_at": w.expires_at.isoformat()}
                for w in expiring
            ],
        }
        if p.budget is not None:
            document["budget"] = budget_as_json(p)
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_status(shotlist, lines, spent=spent, plan=p, origin=origin, notes=notes))
        budget = format_budget(p, this_run="still to spend")
        if budget is not None:
            print(budget)
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
    from kling_pipe._records.assessment import existing_store, read_lock_of  # noqa: PLC0415
    from kling_pipe._records.store import RunLock  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    read_lock_of(shotlist)  # unreadable: refused before anything is written (`garbage`)
    keep_last = 0 if args.versions else args.keep_last
    removed: list[Path] = []  # no records: nothing kling-pipe wrote, nothing to remove
    with existing_store(shotlist, writable=not args.dry_run) as store:
        if store is not None and args.dry_run:
            # Only reads: not even the run lock's pid file is written.
            removed = collect_garbage(shotlist, store, dry_run=True, keep_last=keep_last)
        elif store is not None:
            with RunLock(store.folder):
                removed = collect_garbage(shotlist, store, dry_run=False, keep_last=keep_last)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} file{'s' * (len(removed) != 1)}")
    return EXIT_OK
