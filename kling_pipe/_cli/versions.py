"""The `versions`, `restore`, `approve` and `unapprove` commands: a shot's history, frozen."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kling_pipe._backends.origins import add_backend_arguments, origin_from, origin_kind
from kling_pipe._cli.common import EXIT_OK, Formatter, examples


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `versions`, `restore`, `approve` and `unapprove` to the command line."""
    versions = commands.add_parser(
        "versions",
        formatter_class=Formatter,
        help="list every render a shot ever had, and what changed between them",
        description=(
            "List the versions of shot SHOT: every render it ever had, kept in\n"
            "<output_dir>/versions/<id>.v<N>.mp4 until `gc --versions` removes it. Per\n"
            "version: N, the take, when it was rendered, its task and cost, what changed\n"
            "from the version before (prompt changed, image changed, take 2), and which is\n"
            "current (<id>.mp4 is its copy), picked (the picked take's render for the shot\n"
            "as it is now) and approved; then the prompt it was rendered from (--json:\n"
            "every input, and its fingerprint). Sends nothing, writes nothing."
        ),
        epilog=examples(
            "kling-pipe versions specs/demo.toml puddle",
            "kling-pipe versions specs/demo.toml puddle --json",
        ),
    )
    versions.add_argument("file", type=Path, metavar="FILE", help="shot list")
    versions.add_argument("shot", metavar="SHOT", help="the shot's id")
    versions.add_argument("--json", action="store_true", help="print the versions as JSON")
    add_backend_arguments(versions)
    versions.set_defaults(handler=_cmd_versions)

    restore = commands.add_parser(
        "restore",
        formatter_class=Formatter,
        help="make an earlier version of a shot its video again (free, offline)",
        description=(
            "Make version N of shot SHOT the shot's video: <output_dir>/<id>.mp4 becomes a\n"
            "copy of versions/<id>.v<N>.mp4, and the shots chained from SHOT follow it.\n"
            "Since the shot's inputs may have changed since version N was made, the shot\n"
            "is held as approved: the next run does not pay to replace it (`unapprove` lets\n"
            "it). Free and offline, whether or not WaveSpeed still keeps the output. Exit 2\n"
            "for an unknown shot or version, a version no longer on disk, or a file of your\n"
            "own at <id>.mp4 (nothing is changed)."
        ),
        epilog=examples(
            "kling-pipe restore specs/demo.toml puddle 2",
            "kling-pipe restore specs/demo.toml puddle 2 --backend wavespeed   # real renders",
        ),
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="shot list")
    restore.add_argument("shot", metavar="SHOT", help="the shot's id")
    restore.add_argument(
        "version", type=_version_number, metavar="N", help="the version, as `versions` numbers it"
    )
    restore.add_argument("--json", action="store_true", help="print what was done as JSON")
    add_backend_arguments(restore)
    restore.set_defaults(handler=_cmd_restore)

    approve = commands.add_parser(
        "approve",
        formatter_class=Formatter,
        help="freeze shots on their current render: later edits render nothing",
        description=(
            "Approve each SHOT's current render (its picked take's): from then on a change\n"
            "to what it inherits ([defaults], prompt_prefix) or to its own keys renders\n"
            "nothing, until `kling-pipe unapprove` or `run --rerender SHOT`. Shots chained\n"
            "from it keep following the approved render. Approvals are kept in the lock\n"
            "file, per backend, to commit with the storyboard. Exit 2, changing nothing, for\n"
            "an unknown shot or one with no current render."
        ),
        epilog=examples(
            "kling-pipe approve specs/demo.toml puddle gutter",
            "kling-pipe approve specs/demo.toml puddle --backend wavespeed   # the real renders",
        ),
    )
    approve.add_argument("file", type=Path, metavar="FILE", help="shot list")
    approve.add_argument("shots", nargs="+", metavar="SHOT", help="the shots' ids")
    add_backend_arguments(approve)
    approve.set_defaults(handler=_cmd_approve)

    unapprove = commands.add_parser(
        "unapprove",
        formatter_class=Formatter,
        help="lift approvals: the next run renders the shots as they are now",
        description=(
            "Lift each SHOT's approval: the next run renders it again if its inputs changed\n"
            "since its approved version (says what that costs), and <id>.mp4 becomes its\n"
            "render as it is now where one is on disk. Sends nothing, pays nothing."
        ),
        epilog=examples("kling-pipe unapprove specs/demo.toml puddle"),
    )
    unapprove.add_argument("file", type=Path, metavar="FILE", help="shot list")
    unapprove.add_argument("shots", nargs="+", metavar="SHOT", help="the shots' ids")
    add_backend_arguments(unapprove)
    unapprove.set_defaults(handler=_cmd_unapprove)


def _version_number(text: str) -> int:
    try:
        value = int(text.removeprefix("v"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number (1, 2, ...)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: versions are numbered from 1")
    return value


def _run_command(args: argparse.Namespace) -> str:
    """Spell the `run` that renders what a command made stale, with the same backend flags."""
    command = f"kling-pipe run {args.file}"
    if args.backend != "mock":
        command += f" --backend {args.backend}"
        if args.base_url:
            command += f" --base-url {args.base_url}"
    return command


def _cmd_versions(args: argparse.Namespace) -> int:
    # Each command loads what it uses, so that `kling-pipe --version` stays light.
    from kling_pipe._outputs.versions import format_versions, list_versions  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    listed = list_versions(shotlist, args.shot, origin=origin)
    if args.json:
        document = {**listed.as_json(), "origin": origin, "backend": origin_kind(origin)}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_versions(listed, args.file))
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.versions import format_restored, restore_version  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    result = restore_version(shotlist, args.shot, args.version, origin=origin_from(args))
    if args.json:
        document = {
            "shot": result.shot_id,
            "version": result.version.number,
            "take": result.version.take,
            "file": str(result.file),
            "approved": True,
            "inputs_changed": result.changed or None,
            "stale": [{"id": sid, "cost": str(cost)} for sid, cost in result.followers.stale],
            "to_spend": str(result.followers.to_spend),
            "simulated": result.simulated,
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_restored(result, args.file, _run_command(args)))
    return EXIT_OK


def _cmd_approve(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.versions import approve_shots, format_approved  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    done = approve_shots(shotlist, args.shots, origin=origin_from(args))
    print(format_approved(done, args.file))
    return EXIT_OK


def _cmd_unapprove(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.versions import format_unapproved, unapprove_shots  # noqa: PLC0415
    from kling_pipe._records.assessment import is_simulated  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    done = unapprove_shots(shotlist, args.shots, origin=origin)
    print(format_unapproved(done, _run_command(args), simulated=is_simulated(origin)))
    return EXIT_OK
