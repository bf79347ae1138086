"""`kling-pipe bill` and `kling-pipe models`: what was charged, and what things cost."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from kling_pipe._backends.origins import add_backend_arguments, origin_from, origin_kind
from kling_pipe._cli.common import EXIT_FAILED, EXIT_OK, Formatter, examples
from kling_pipe.exceptions import KlingPipeError

if TYPE_CHECKING:
    from kling_pipe._backends.account import ServerModel
    from kling_pipe._decisions.attempts import Attempt
    from kling_pipe._decisions.bill import Bill
    from kling_pipe._records.store import BalanceReading


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bill` and `models` to the command line."""
    bill = commands.add_parser(
        "bill",
        formatter_class=Formatter,
        help="check what WaveSpeed charged against what the records say was spent",
        description=(
            "Check the storyboard's bill: each task the records name (shot, task id, model,\n"
            "recorded cost) against WaveSpeed's itemised charges and refunds for it\n"
            "(billings/search), every difference named. Where the account does not answer\n"
            "the billing search, the last run is checked by the balance before and after it,\n"
            "with a warning: other clients on the account move the balance too. Sends no\n"
            "submit. Exit 0 when the bill reconciles, 1 when it does not (or cannot be\n"
            "checked), 2 for bad input."
        ),
        epilog=examples(
            "kling-pipe bill specs/demo.toml --backend wavespeed",
            "kling-pipe bill specs/demo.toml --backend wavespeed --json",
        ),
    )
    bill.add_argument("file", type=Path, metavar="FILE", help="shot list")
    bill.add_argument("--json", action="store_true", help="print the bill as JSON")
    add_backend_arguments(bill, "whose bill: WaveSpeed's (--backend wavespeed)")
    bill.set_defaults(handler=_cmd_bill)

    models = commands.add_parser(
        "models",
        formatter_class=Formatter,
        help="list the model catalogue; with --backend wavespeed, compare it with WaveSpeed's",
        description=(
            "List every model kling-pipe knows: its WaveSpeed path, request fields,\n"
            "durations, price and where each fact came from. With --backend wavespeed,\n"
            "compare them with WaveSpeed's own models list (GET /api/v3/models: request\n"
            "schemas and prices) and name every difference. Exit 0, or 1 when there are\n"
            "differences."
        ),
        epilog=examples(
            "kling-pipe models",
            "kling-pipe models --backend wavespeed   # compare with WaveSpeed's list",
        ),
    )
    models.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    add_backend_arguments(models, "compare with the real WaveSpeed API's list (wavespeed)")
    models.set_defaults(handler=_cmd_models)


def _quiet_stamina() -> None:
    """Silence stamina's own retry lines: the client logs a clearer one for each retry."""
    import stamina  # noqa: PLC0415 - loaded with the HTTP client it retries for

    stamina.instrumentation.set_on_retry_hooks([])


def _cmd_models(args: argparse.Namespace) -> int:
    from kling_pipe._running.models import catalogue_rows, compare_models  # noqa: PLC0415

    rows = catalogue_rows()
    differences: list[str] | None = None
    if args.backend != "mock":
        _quiet_stamina()
        listed = asyncio.run(_server_models(args))
        differences = compare_models(rows, listed)
    if args.json:
        document: dict[str, object] = {"models": [row.as_json() for row in rows]}
        if differences is not None:
            document["differences"] = differences
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for row in rows:
            print("\n".join(row.lines()))
        if differences is not None:
            where = origin_from(args)
            if differences:
                print(f"{len(differences)} difference(s) from the models list at {where}:")
                print("\n".join(f"  {d}" for d in differences))
            else:
                print(f"the models list at {where} agrees with the catalogue")
    return EXIT_FAILED if differences else EXIT_OK


async def _server_models(args: argparse.Namespace) -> list[ServerModel]:
    from kling_pipe._backends.connect import connect  # noqa: PLC0415
    from kling_pipe._running.money import account_of  # noqa: PLC0415

    async with connect(args.backend, args.base_url, None, 0.0, None) as connected:
        account = account_of(connected.backend)
        if account is None:  # pragma: no cover - the wavespeed backend always has one
            raise KlingPipeError("this backend has no models list")
        return await account.list_models()


def _cmd_bill(args: argparse.Namespace) -> int:
    from kling_pipe._records.assessment import existing_store  # noqa: PLC0415
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    shotlist = load(args.file)  # a file that is not there or not a shot list says so first
    origin = origin_from(args)
    if origin_kind(origin) == "mock":
        raise KlingPipeError(
            f"{args.file}: the bundled mock's money is simulated, so there is no bill to "
            "check; use --backend wavespeed (with --base-url for a local server)"
        )
    with existing_store(shotlist) as store:
        attempts = [] if store is None else [a for a in store.attempts() if a.origin == origin]
        readings = [] if store is None else store.balance_readings(origin)
    _quiet_stamina()
    bill = asyncio.run(_bill(args, attempts, readings))
    if args.json:
        print(json.dumps(bill.as_json(), indent=2, ensure_ascii=False))
    else:
        print(_format_bill(bill))
    return EXIT_OK if bill.reconciles else EXIT_FAILED


async def _bill(
    args: argparse.Namespace, ours: list[Attempt], readings: list[BalanceReading]
) -> Bill:
    """Check the bill per task; without the billing search, the last run by its balance."""
    from kling_pipe._backends.connect import connect  # noqa: PLC0415
    from kling_pipe._running.money import account_of, check_bill  # noqa: PLC0415

    async with connect(args.backend, args.base_url, None, 0.0, None) as connected:
        account = account_of(connected.backend)
        now = datetime.now(UTC)
        bill = await check_bill(account, ours, now=now)
        complete = [(r, r.after) for r in readings if r.after is not None]
        if bill.mode != "unchecked" or not complete:
            return bill
        last, after = complete[-1]
        ended = last.ended_at or now
        in_run = [a for a in ours if last.started_at <= a.sent_at <= ended]
        return await check_bill(account, in_run, now=now, balance=(last.before, after))


def _format_bill(bill: Bill) -> str:
    """Show the bill per task, then each difference, the warnings and the summary line."""
    header = ("shot", "task id", "model", "recorded", "charged", "refunded", "difference")
    rows = [
        (
            line.shot_id,
            line.task_id,
            line.model.removeprefix("kwaivgi/"),
            _usd(line.recorded),
            "-" if line.billed is None else _usd(line.billed.charged),
            "-" if line.billed is None else _usd(line.billed.refunded),
            "-" if line.difference is None else _usd(line.difference),
        )
        for line in bill.lines
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.extend(f"differs: {line.describe()}" for line in bill.differences)
    lines.extend(f"warning: {w}" for w in bill.warnings())
    lines.append(bill.summary())
    return "\n".join(lines)


def _usd(value: Decimal) -> str:
    """Show an amount with three places, as prices are written (more only where it has more)."""
    exponent = value.as_tuple().exponent
    return f"{value:.3f}" if isinstance(exponent, int) and exponent >= -3 else str(value)
