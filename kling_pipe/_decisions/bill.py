"""The bill, checked: what the records say was spent against what WaveSpeed charged.

Two ways to know what WaveSpeed charged, best first:

- **itemised** (``billings/search`` answers): each task's charges and refunds, so every task
  the records name is checked on its own, to the cent, and a difference names its shot;
- **balance** (it does not): the account's balance before and after a run. That is one
  number for the whole run, and any other client on the account (a teammate, a script, the
  web playground) moves it too: a difference there is a warning, not proof.

What the records say a task cost is its attempt's cost when the attempt's state is charged
(`CHARGED_STATES`: it cost money, or may have), else nothing (a failed task is refunded, a
refused submit made none). A task id recorded several times (a copy of a take records the
same task at no cost) counts once, at its highest cost, as the budget counts it.

Pure: the records and the server's answers are read by the shell (`kling_pipe._running.billing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Literal

import attrs

from kling_pipe._decisions.attempts import Attempt
from kling_pipe._shotlist.rules import ZERO_USD

__all__ = [
    "BLUR_WARNING",
    "Bill",
    "BillLine",
    "BillMode",
    "Billed",
    "reconcile_balance",
    "reconcile_itemised",
    "recorded_costs",
]

#: How the bill was checked: per task, by the balance, or not at all.
BillMode = Literal["itemised", "balance", "unchecked"]

#: What the balance cannot tell, said wherever a bill is checked by it.
BLUR_WARNING = (
    "WaveSpeed's billing search did not answer, so the bill is checked by the balance before "
    "and after; any other client on the account (another script, a teammate, the web "
    "playground) moves the balance too, so a difference is not proof, and an agreement "
    "could hide two differences"
)


@attrs.frozen(kw_only=True)
class Billed:
    """What WaveSpeed's billing search says about one task: money taken and given back."""

    charged: Decimal = ZERO_USD
    refunded: Decimal = ZERO_USD

    @property
    def net(self) -> Decimal:
        """What the task cost in the end."""
        return self.charged - self.refunded


@attrs.frozen(kw_only=True)
class Recorded:
    """One task as the records know it: the shot, the model and what it cost."""

    task_id: str
    shot_id: str
    model: str
    cost: Decimal


@attrs.frozen(kw_only=True)
class BillLine:
    """One task of the bill: what the records say against what WaveSpeed charged."""

    shot_id: str
    task_id: str
    model: str
    recorded: Decimal
    #: None where WaveSpeed's items were not read (checked by the balance, or not at all).
    billed: Billed | None = None

    @property
    def difference(self) -> Decimal | None:
        """WaveSpeed's net charge minus the records' cost (None when not itemised)."""
        return None if self.billed is None else self.billed.net - self.recorded

    @property
    def agrees(self) -> bool:
        """Whether this task's charge is what the records say (to the cent and below)."""
        return self.difference is None or self.difference == 0

    def describe(self) -> str:
        """Say how this task's charge differs from the records (for a difference only)."""
        if self.billed is None:
            return f"{self.shot_id} (task {self.task_id}): not itemised"
        if self.billed.charged == 0 and self.recorded > 0:
            what = "WaveSpeed has no charge for it"
        elif self.recorded == 0:
            what = f"the records say it cost nothing, WaveSpeed took {self.billed.net} USD net"
        else:
            what = f"WaveSpeed took {self.billed.net} USD net, the records say {self.recorded} USD"
        return f"{self.shot_id} (task {self.task_id}, {self.model}): {what}"


@attrs.frozen(kw_only=True)
class Bill:
    """The run's (or the storyboard's) bill, reconciled one way or the other."""

    mode: BillMode
    lines: tuple[BillLine, ...] = ()
    #: Records that may have cost money but name no task (a submit whose answer was lost
    #: and never settled): no item can be matched to them.
    untasked: Decimal = ZERO_USD
    #: The balance before and after (balance mode only).
    balance_before: Decimal | None = None
    balance_after: Decimal | None = None
    #: Why the bill could not be checked (mode ``unchecked``).
    reason: str = ""

    @property
    def recorded(self) -> Decimal:
        """What the records say was spent (tasks, and submits that may have made one)."""
        return sum((line.recorded for line in self.lines), self.untasked)

    @property
    def charged(self) -> Decimal | None:
        """What WaveSpeed says it took, net of refunds; None when unchecked."""
        if self.mode == "itemised":
            return sum((line.billed.net for line in self.lines if line.billed), ZERO_USD)
        if self.mode == "balance" and self.balance_before is not None:
            return self.balance_before - (self.balance_after or ZERO_USD)
        return None

    @property
    def difference(self) -> Decimal | None:
        """WaveSpeed's figure minus the records'; None when unchecked."""
        charged = self.charged
        return None if charged is None else charged - self.recorded

    @property
    def differences(self) -> tuple[BillLine, ...]:
        """The tasks whose charge is not what the records say."""
        return tuple(line for line in self.lines if not line.agrees)

    @property
    def reconciles(self) -> bool:
        """Whether the bill agrees with the records (never when it could not be checked)."""
        if self.mode == "unchecked":
            return False
        if self.mode == "itemised":
            return not self.differences and self.untasked == 0
        return self.difference == 0

    def warnings(self) -> list[str]:
        """Say what a reader must know beside the figures."""
        found = []
        if self.mode == "balance":
            found.append(BLUR_WARNING)
        if self.untasked:
            found.append(
                f"{self.untasked} USD recorded for submits that name no task (an answer "
                "lost and never settled): no charge can be matched to them"
            )
        return found

    def as_json(self) -> dict[str, object]:
        """Return the bill as data: money as decimal strings, one entry per task."""

        def money(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "mode": self.mode,
            "reconciles": self.reconciles,
            "recorded": str(self.recorded),
            "charged": money(self.charged),
            "difference": money(self.difference),
            "balance_before": money(self.balance_before),
            "balance_after": money(self.balance_after),
            "untasked": str(self.untasked),
            "reason": self.reason or None,
            "warnings": self.warnings(),
            "tasks": [
                {
                    "shot": line.shot_id,
                    "task_id": line.task_id,
                    "model": line.model,
                    "recorded": str(line.recorded),
                    "charged": money(line.billed.charged if line.billed else None),
                    "refunded": money(line.billed.refunded if line.billed else None),
                    "difference": money(line.difference),
                }
                for line in self.lines
            ],
        }

    def summary(self) -> str:
        """One line for a run's summary: the figures and whether they agree."""
        if self.mode == "unchecked":
            return f"bill: not checked ({self.reason})"
        verdict = "reconciles" if self.reconciles else f"differs by {self.difference} USD"
        how = "per task" if self.mode == "itemised" else "by the balance (see the warning)"
        return (
            f"bill: recorded {self.recorded} USD, WaveSpeed charged {self.charged} USD "
            f"{how}: {verdict}"
        )


def recorded_costs(attempts: Iterable[Attempt]) -> tuple[list[Recorded], Decimal]:
    """Each task the records name with what it cost, and what untasked records may have.

    A task counts once, at its highest recorded cost (a copy records it again at no cost);
    an attempt not in a charged state cost nothing (failed: refunded; refused: no task).
    """
    by_task: dict[str, Recorded] = {}
    untasked = ZERO_USD
    for attempt in attempts:
        cost = attempt.cost if attempt.charged else ZERO_USD
        if attempt.task_id is None:
            untasked += cost
            continue
        known = by_task.get(attempt.task_id)
        if known is None or cost > known.cost:
            by_task[attempt.task_id] = Recorded(
                task_id=attempt.task_id,
                shot_id=known.shot_id if known else attempt.shot_id,
                model=attempt.model,
                cost=cost,
            )
    return list(by_task.values()), untasked


def reconcile_itemised(attempts: Iterable[Attempt], billed: Mapping[str, Billed]) -> Bill:
    """Check each recorded task against its billing items (*billed*: by task id).

    Items of tasks the records do not name are another client's (or another storyboard's)
    and are left out; a recorded task with no item shows as charged nothing.
    """
    recorded, untasked = recorded_costs(attempts)
    lines = tuple(
        BillLine(
            shot_id=r.shot_id,
            task_id=r.task_id,
            model=r.model,
            recorded=r.cost,
            billed=billed.get(r.task_id, Billed()),
        )
        for r in recorded
    )
    return Bill(mode="itemised", lines=lines, untasked=untasked)


def reconcile_balance(attempts: Iterable[Attempt], before: Decimal, after: Decimal) -> Bill:
    """Check what the records say a run spent against the balance's fall over the run."""
    recorded, untasked = recorded_costs(attempts)
    lines = tuple(
        BillLine(shot_id=r.shot_id, task_id=r.task_id, model=r.model, recorded=r.cost)
        for r in recorded
    )
    return Bill(
        mode="balance",
        lines=lines,
        untasked=untasked,
        balance_before=before,
        balance_after=after,
    )
