"""The account balance and a ledger of every charge and refund, so double charges show."""

from __future__ import annotations

import enum
from decimal import Decimal

import attrs


class EntryKind(enum.StrEnum):
    """Why the balance moved."""

    CHARGE = "charge"
    REFUND = "refund"


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """One movement of the balance; *amount_usd* is negative for a charge."""

    seq: int
    at: float
    kind: EntryKind
    task_id: str
    amount_usd: Decimal
    balance_usd: Decimal


class InsufficientBalanceError(Exception):
    """The balance does not cover a task's price."""


@attrs.define
class Ledger:
    """Charges accepted tasks and refunds failed ones, each at most once."""

    balance_usd: Decimal
    entries: list[LedgerEntry] = attrs.field(factory=list)
    #: What each task was charged, net of refunds: a refund needs no scan of the ledger
    #: (a busy account has tens of thousands of entries).
    _net: dict[str, Decimal] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        for entry in self.entries:
            self._net[entry.task_id] = self._net.get(entry.task_id, Decimal(0)) + entry.amount_usd

    def charge(self, task_id: str, amount_usd: Decimal, at: float) -> None:
        """Debit *amount_usd* for *task_id*, or raise if the balance is short."""
        if amount_usd > self.balance_usd:
            raise InsufficientBalanceError(
                f"insufficient balance: this task costs USD {amount_usd}, "
                f"the balance is USD {self.balance_usd}"
            )
        self._move(EntryKind.CHARGE, task_id, -amount_usd, at)

    def refund(self, task_id: str, at: float) -> None:
        """Credit back what *task_id* was charged, unless it already was."""
        charged = self._net.get(task_id, Decimal(0))
        if charged < 0:
            self._move(EntryKind.REFUND, task_id, -charged, at)

    def _move(self, kind: EntryKind, task_id: str, amount_usd: Decimal, at: float) -> None:
        self.balance_usd += amount_usd
        self._net[task_id] = self._net.get(task_id, Decimal(0)) + amount_usd
        self.entries.append(
            LedgerEntry(
                seq=len(self.entries) + 1,
                at=at,
                kind=kind,
                task_id=task_id,
                amount_usd=amount_usd,
                balance_usd=self.balance_usd,
            )
        )
