"""The `adopt` command: make a task the user checked a shot's own, by proof, paying nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kling_pipe._backends.origins import add_backend_arguments
from kling_pipe._cli.common import EXIT_INVALID, EXIT_OK, Formatter, examples


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `adopt` to the command line."""
    adopt = commands.add_parser(
        "adopt",
        formatter_class=Formatter,
        help="make a task you checked a shot's own (an uncertain shot's candidate); pays nothing",
        description=(
            "Look task TASK_ID up and prove it is SHOT's the way a lost answer is settled:\n"
            "its video must start on the shot's first image (and end on its last image).\n"
            "Prints the verdict (match, mismatch or undecided, and why). A match is adopted:\n"
            "claimed for this shot list, recorded as the shot's task, and downloaded now if\n"
            "it is complete (else the next run polls it). An undecided proof is adopted only\n"
            "with --force; a mismatch never. For an uncertain shot this is the way on that\n"
            "does not pay again (--resubmit-uncertain does). Sends no submit, pays nothing.\n"
            "Exit 0 adopted, 2 refused."
        ),
        epilog=examples(
            "kling-pipe status specs/demo.toml                  # uncertain: names candidates",
            "kling-pipe adopt specs/demo.toml gutter 0123456789abcdef0123456789abcdef",
            "kling-pipe adopt specs/takes.toml river#2 TASK_ID --backend wavespeed --force",
        ),
    )
    adopt.add_argument("file", type=Path, metavar="FILE", help="shot list")
    adopt.add_argument("shot", metavar="SHOT", help="the shot's id (ID#K for take K)")
    adopt.add_argument(
        "task_id", metavar="TASK_ID", help="the task to adopt, as WaveSpeed names it"
    )
    adopt.add_argument(
        "--force",
        action="store_true",
        help="adopt it though the proof cannot decide (never when it is a mismatch)",
    )
    add_backend_arguments(adopt, "whose task: the bundled mock's (default) or WaveSpeed's")
    adopt.set_defaults(handler=_cmd_adopt)


def _cmd_adopt(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - each command loads what it uses

    from kling_pipe._running.adopting import (  # noqa: PLC0415
        AdoptRefusedError,
        adopt_task,
        format_adoption,
    )

    try:
        result = asyncio.run(
            adopt_task(
                args.file,
                args.shot,
                args.task_id,
                backend=args.backend,
                base_url=args.base_url,
                force=args.force,
            )
        )
    except AdoptRefusedError as refused:
        if refused.line:
            print(refused.line)
        print(f"kling-pipe: {refused}", file=sys.stderr)
        return EXIT_INVALID
    print(format_adoption(result))
    return EXIT_OK
