"""The `status` and `gc` commands: what the records say, and cleaning the output folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kling_pipe._backends.origins import add_backend_arguments, origin_from
from kling_pipe._cli.common import EXIT_OK, Formatter, examples


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status` and `gc` to the command line."""
    status = commands.add_parser(
        "status",
        formatter_class=Formatter,
        help="show each shot: cached, stale and why, pending, in flight, failed, uncertain",
        description=(
            "Show what the records beside a shot list say about each shot: cached (its\n"
            "video is on disk, unchanged), stale (an input changed: which), pending (never\n"
            "rendered), in flight (a task from an earlier run), refetch (rendered, but the\n"
            "file is missing), failed, uncertain (a lost submit the history could not\n"
            "settle). Then the money spent so far and still to spend. Sends nothing."
        ),
        epilog=examples(
            "kling-pipe status specs/demo.toml", "kling-pipe status specs/demo.toml --json"
        ),
    )
    status.add_argument("file", type=Path, metavar="FILE", help="shot list")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_backend_arguments(status)
    status.set_defaults(handler=_cmd_status)

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
    from kling_pipe._decisions.plan import ZERO_USD, plan  # noqa: PLC0415
    from kling_pipe._records.assessment import (  # noqa: PLC0415
        assess_shotlist,
        is_simulated,
        open_store,
        read_lock_of,
    )
    from kling_pipe._records.status import format_status, status_lines  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file)
    origin = origin_from(args)
    store = open_store(shotlist, create=False)
    try:
        assessment = assess_shotlist(shotlist, store, origin=origin, lock=read_lock_of(shotlist))
        spent = store.spent(origin) if store is not None else ZERO_USD
    finally:
        if store is not None:
            store.close()
    p = plan(shotlist, statuses=assessment.statuses)
    lines = status_lines(shotlist, assessment)
    if args.json:
        document = {
            "storyboard": shotlist.storyboard.name,
            "shots": [
                {"id": r.id, "status": r.label, "detail": r.detail, "task_id": r.task_id}
                for r in lines
            ],
            "spent": str(spent),
            "to_spend": str(p.total_cost),
            "origin": origin,
            "simulated": is_simulated(origin),
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_status(shotlist, lines, spent=spent, plan=p, simulated=is_simulated(origin)))
    return EXIT_OK


def _cmd_gc(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.folders import collect_garbage  # noqa: PLC0415 - see _cmd_status
    from kling_pipe._records.assessment import open_store  # noqa: PLC0415
    from kling_pipe._records.store import RunLock, state_dir_for  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file)
    store = open_store(shotlist, create=False)
    if store is None:
        removed: list[Path] = []  # no records: nothing kling-pipe wrote, nothing to remove
    else:
        with store, RunLock(state_dir_for(shotlist.source)):
            removed = collect_garbage(shotlist, store, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} file{'s' * (len(removed) != 1)}")
    return EXIT_OK
