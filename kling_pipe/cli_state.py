"""The `status` and `gc` commands: what the records say, and cleaning the output folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kling_pipe.housekeeping import collect_garbage, format_status, status_lines
from kling_pipe.loader import load
from kling_pipe.plan import ZERO_USD, plan
from kling_pipe.records import assess_shotlist, open_store
from kling_pipe.store import RunLock, state_dir_for

_Formatter = argparse.RawDescriptionHelpFormatter


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status` and `gc` to the command line."""
    status = commands.add_parser(
        "status",
        formatter_class=_Formatter,
        help="show each shot: cached, stale and why, pending, in flight, failed, uncertain",
        description=(
            "Show what the records beside a shot list say about each shot: cached (its\n"
            "video is on disk, unchanged), stale (an input changed: which), pending (never\n"
            "rendered), in flight (a task from an earlier run), refetch (rendered, but the\n"
            "file is missing), failed, uncertain (a lost submit the history could not\n"
            "settle). Then the money spent so far and still to spend. Sends nothing."
        ),
        epilog=(
            "examples:\n  kling-pipe status specs/demo.toml\n"
            "  kling-pipe status specs/demo.toml --json"
        ),
    )
    status.add_argument("file", type=Path, metavar="FILE", help="shot list")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_cmd_status)

    gc = commands.add_parser(
        "gc",
        formatter_class=_Formatter,
        help="remove outputs no shot of the list needs any more",
        description=(
            "Remove files in the shot list's output folder that no current shot needs:\n"
            "videos and thumbnails of shots no longer in the list, frames of chains no\n"
            "longer used, and temporary files left by an interrupted run. Touches nothing\n"
            "else. Refuses while a run of the same shot list is going on."
        ),
        epilog=(
            "examples:\n  kling-pipe gc specs/demo.toml --dry-run\n  kling-pipe gc specs/demo.toml"
        ),
    )
    gc.add_argument("file", type=Path, metavar="FILE", help="shot list")
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    gc.set_defaults(handler=_cmd_gc)


def _cmd_status(args: argparse.Namespace) -> int:
    shotlist = load(args.file)
    store = open_store(shotlist, create=False)
    try:
        assessment = assess_shotlist(shotlist, store)
        spent = store.spent() if store is not None else ZERO_USD
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
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_status(shotlist, lines, spent=spent, plan=p))
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    shotlist = load(args.file)
    with RunLock(state_dir_for(shotlist.source)):
        removed = collect_garbage(shotlist, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} file{'s' * (len(removed) != 1)}")
    return 0
