"""The commands around a render: `schema`, `init`, `cut`, `export` and `report`.

They live apart from `cli` so the render commands stay short; `cli.build_parser` adds them
with `add_commands`. Like every command, each parses its arguments, calls the library and
prints: a user's mistake is one line per problem on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

from kling_pipe._backends.origins import add_backend_arguments, origin_from
from kling_pipe._cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    Formatter,
    describe_os_error,
    examples,
    print_problems,
)
from kling_pipe._shotlist.validate import PLACEHOLDER
from kling_pipe.exceptions import KlingPipeError, ShotListError

Handler = Callable[[argparse.Namespace], int]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `schema`, `init`, `cut`, `export` and `report` to the `kling-pipe` subcommands."""
    schema = commands.add_parser(
        "schema",
        formatter_class=Formatter,
        help="print the JSON Schema of the shot list, for editors",
        description=(
            "Print the JSON Schema (draft 2020-12) of the shot-list format. Editors with\n"
            "Taplo / Even Better TOML use it for completion, hover text and inline errors:\n"
            "save it and name it in the first line of a shot list, `#:schema ./FILE`."
        ),
        epilog=examples(
            "kling-pipe schema > shotlist.schema.json",
            "kling-pipe schema | python -m json.tool --compact",
        ),
    )
    schema.set_defaults(handler=_guarded(_cmd_schema))

    init = commands.add_parser(
        "init",
        formatter_class=Formatter,
        help="write a starter shot list from a folder of keyframes",
        description=(
            "Write a starter shot list: one shot per image of DIR (PNG, JPEG or WebP,\n"
            "checked by content) in natural name order, ids from the file names, and\n"
            f'placeholder prompts starting "{PLACEHOLDER}" to replace. With --bridge each\n'
            "image is also the previous shot's last frame, so the shots flow into one\n"
            "another. Every other file of DIR (a TIFF, BMP or GIF, a text file) is left out\n"
            "and named on stderr, one line each, with why. The file passes every check but\n"
            "one: `validate` and `run` refuse it until each placeholder prompt is replaced.\n"
            "It is never written over an existing one; shotlist.schema.json is written\n"
            "beside it for editors. Exit 2 if DIR has no image, an image fails the checks,\n"
            "or the file exists."
        ),
        epilog=examples(
            "kling-pipe init specs/frames --name lighthouse   # writes specs/lighthouse.toml",
            "kling-pipe init specs/frames --name lighthouse --bridge -o board.toml",
        ),
    )
    init.add_argument("images", type=Path, metavar="DIR", help="folder of keyframe images")
    init.add_argument("--name", required=True, help="the storyboard's name (names its folder)")
    init.add_argument(
        "--bridge", action="store_true", help="make each image the previous shot's last frame"
    )
    init.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write the shot list (default: NAME.toml beside DIR)",
    )
    init.set_defaults(handler=_guarded(_cmd_init))

    cut_cmd = commands.add_parser(
        "cut",
        formatter_class=Formatter,
        help="join the rendered shots into one film",
        description=(
            "Join the rendered shots, in storyboard order, into one MP4. Packets are copied\n"
            "as they are when every shot shares its encoding; otherwise frames are\n"
            "re-encoded (H.264) at the first shot's size, scaled to fit and padded.\n"
            "Missing shots are an error naming them, unless --partial. Exit 2 for an invalid\n"
            "shot list, missing shots or an unreadable video."
        ),
        epilog=examples(
            "kling-pipe cut specs/demo.toml -o film.mp4",
            "kling-pipe cut specs/demo.toml -o rough.mp4 --partial   # skip missing shots",
        ),
    )
    cut_cmd.add_argument("file", type=Path, metavar="FILE", help="shot list")
    cut_cmd.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILM", help="the MP4 to write"
    )
    cut_cmd.add_argument("--partial", action="store_true", help="leave out shots not rendered yet")
    add_backend_arguments(cut_cmd)
    cut_cmd.set_defaults(handler=_guarded(_cmd_cut))

    export = commands.add_parser(
        "export",
        formatter_class=Formatter,
        help="write the cut as an editor's timeline (OpenTimelineIO, EDL, FCP XML)",
        description=(
            "Write the storyboard as a timeline to open in an editor (Resolve, Premiere,\n"
            "Avid...): one video track, one clip per shot in storyboard order, each the whole\n"
            "of the shot's <output_dir>/<id>.mp4 (the picked take) at the file's own length\n"
            "and frame rate, named after the shot, with its prompt, cost, task id and\n"
            "fingerprint as clip metadata (key kling_pipe). The format follows the\n"
            "extension: .otio always; .edl (CMX 3600) and .xml (Final Cut Pro 7) with\n"
            "pip install 'kling-pipe[editors]'. A shot counts as rendered when the lock file\n"
            "records its file as it is; others are an error naming them, unless --allow-gaps.\n"
            "An existing TIMELINE is replaced only if an earlier export wrote it. Exit 2 for\n"
            "an invalid shot list, shots not rendered, an unknown extension, a missing\n"
            "adapter or a file not to overwrite; nothing is written then."
        ),
        epilog=examples(
            "kling-pipe export specs/demo.toml -o paper-boat.otio",
            "kling-pipe export specs/demo.toml -o rough.otio --allow-gaps   # gaps for missing",
            "kling-pipe export specs/demo.toml -o film.edl --backend wavespeed",
        ),
    )
    export.add_argument("file", type=Path, metavar="FILE", help="shot list")
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="TIMELINE",
        help="the timeline to write: NAME.otio, NAME.edl, NAME.xml",
    )
    export.add_argument(
        "--allow-gaps",
        action="store_true",
        help="put a gap of its planned duration for each shot not rendered yet",
    )
    add_backend_arguments(export)
    export.set_defaults(handler=_guarded(_cmd_export))

    report = commands.add_parser(
        "report",
        formatter_class=Formatter,
        help="write the contact sheet (index.html) from the rendered files",
        description=(
            "Write the contact sheet, <output_dir>/index.html: per shot in storyboard order\n"
            "its first and last frames, prompt, duration, cost, status and a player. A shot\n"
            "is done if <output_dir>/<id>.mp4 is there; its cost is the model's price for\n"
            "its duration. The page makes no network request; zip the folder to share it.\n"
            "Prints the page's path. Exit 2 for an invalid shot list."
        ),
        epilog=examples(
            "kling-pipe report specs/demo.toml",
            'xdg-open "$(kling-pipe report specs/demo.toml)"',
        ),
    )
    report.add_argument("file", type=Path, metavar="FILE", help="shot list")
    add_backend_arguments(report)
    report.set_defaults(handler=_guarded(_cmd_report))


def _guarded(handler: Handler) -> Handler:
    """Turn the errors a user can cause into one-line messages and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ShotListError as error:
            print_problems(error)
        except KlingPipeError as error:
            print(f"kling-pipe: {error}", file=sys.stderr)
        except BrokenPipeError:
            raise  # the reader of our output went away: `cli.main` ends quietly
        except OSError as error:
            print(f"kling-pipe: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_INVALID

    return run


def _cmd_schema(_args: argparse.Namespace) -> int:
    # Each command loads what it uses, so that `kling-pipe --version` stays light.
    from kling_pipe._shotlist.schema import schema_json  # noqa: PLC0415

    sys.stdout.write(schema_json())
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from kling_pipe._shotlist.scaffold import init_shot_list, placeholders_left  # noqa: PLC0415

    def skipped(entry: Path, why: str) -> None:
        print(f"{entry}: skipped: {why}", file=sys.stderr)

    path = init_shot_list(
        args.images, name=args.name, bridge=args.bridge, out=args.output, on_skip=skipped
    )
    # Every shot has its placeholder prompt, so this counts the shots.
    n = placeholders_left(path)
    print(
        f"{path}: {n} shot{'s' * (n != 1)} from {args.images}; "
        f'replace the prompts starting "{PLACEHOLDER}", then: kling-pipe run {path}'
    )
    return EXIT_OK


def _cmd_cut(args: argparse.Namespace) -> int:

    from kling_pipe._outputs.cut import cut  # noqa: PLC0415
    from kling_pipe._outputs.folders import check_writable_target, record_written  # noqa: PLC0415
    from kling_pipe._records.assessment import existing_store  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    with existing_store(shotlist, writable=True) as store:
        # Never over an input, the shot list, its records or a render; over an earlier
        # film only if kling-pipe wrote it and nobody changed it since.
        check_writable_target(shotlist, args.output, store, "cut")
        result = cut(shotlist, args.output, partial=args.partial, origin=origin)
        if store is not None:
            record_written(store, shotlist, result.output, kind="cut", origin=origin, shot_id=None)
    how = "packets copied" if result.stream_copy else "re-encoded"
    n = len(result.shots)
    print(f"{result.output}: {n} shot{'s' * (n != 1)}, {result.duration_s:.1f} s ({how})")
    missing = [s.id for s in shotlist.shots if s.id in result.missing]
    if missing:
        skipped = ", ".join(f'"{m}"' for m in missing)
        print(f"{args.file}: left out, not rendered: {skipped}", file=sys.stderr)
    if result.stale:
        skipped = ", ".join(f'"{sid}" ({why})' for sid, why in result.stale)
        print(f"{args.file}: left out, not current: {skipped}", file=sys.stderr)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    # OpenTimelineIO loads here only, so that every other command stays light.
    from kling_pipe._outputs.export import export_timeline  # noqa: PLC0415
    from kling_pipe._records.assessment import existing_store  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415 - see _cmd_schema

    shotlist = load(args.file, records_only=True)
    with existing_store(shotlist, writable=True) as store:
        # The records say which existing timeline is an earlier export, to be replaced.
        result = export_timeline(
            shotlist, origin_from(args), args.output, allow_gaps=args.allow_gaps, store=store
        )
    n = len(result.clips)
    gaps = f", {len(result.gaps)} gap{'s' * (len(result.gaps) != 1)}" if result.gaps else ""
    print(
        f"{result.output}: {n} clip{'s' * (n != 1)}{gaps}, {result.duration_s:.1f} s "
        f"({result.format_name})"
    )
    unrendered = [sid for sid, why in result.gap_reasons if why == "not rendered"]
    if unrendered:
        listed = ", ".join(f'"{g}"' for g in unrendered)
        print(f"{args.file}: gaps for shots not rendered: {listed}", file=sys.stderr)
    if others := [(sid, why) for sid, why in result.gap_reasons if why != "not rendered"]:
        listed = ", ".join(f'"{sid}" ({why})' for sid, why in others)
        print(f"{args.file}: gaps for shots with no current video: {listed}", file=sys.stderr)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from kling_pipe._outputs.report import write_report  # noqa: PLC0415
    from kling_pipe._records.assessment import (  # noqa: PLC0415
        adopt_lock,
        existing_store,
        image_hashes,
        read_lock_of,
        recorded_units,
    )
    from kling_pipe._records.lockfile import section_for  # noqa: PLC0415
    from kling_pipe._records.store import Store  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415 - see _cmd_schema

    shotlist = load(args.file, records_only=True)
    origin = origin_from(args)
    lock = read_lock_of(shotlist)
    with existing_store(shotlist, writable=True) as store, contextlib.ExitStack() as stack:
        images = image_hashes(shotlist, store, lock)
        records = store
        if records is None and lock is not None:
            # A checkout with the lock file and no state: the sheet shows what the lock
            # records for the origin, as `status` does, in records that last this command.
            records = stack.enter_context(Store.in_memory())
            adopt_lock(records, shotlist, lock, images)
        # Fingerprinted here, a missing keyframe from the records, as `status` does.
        units = recorded_units(shotlist, lock, section_for(origin), images)
        page = write_report(
            shotlist,
            store=records,
            origin=origin,
            fingerprints=units.fingerprints,
            picks=units.picks,
        )
        print(page)
    return EXIT_OK
