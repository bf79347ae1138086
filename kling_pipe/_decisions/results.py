"""What a run did, shot by shot: the record the summary, `--json` and callers read.

One `ShotResult` per render unit: a shot of N takes has N, each with its own task, file and
cost; `id` is the unit key (the shot's id for take 1, ``id#k`` for take k) and `shot`, `take`
and `picked` say which take of which shot it is. The totals count takes, and name how many
shots they belong to.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import attrs

from kling_pipe._shotlist.rules import ZERO_USD

if TYPE_CHECKING:  # a result only holds the bill: `validate`, which needs neither, loads less
    from kling_pipe._decisions.bill import Bill

#: A run's exit codes, as every command reports them: 0 every shot has its video, 1 some do not
#: (the command line adds its own: 2 invalid input, 128 + a signal when stopped).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1

ShotState = Literal[
    "queued",
    "uploading",
    "submitting",
    "processing",
    "downloading",
    "done",
    "cached",
    "failed",
    "uncertain",
    "skipped",
    "cancelled",
    "expired",
    "excluded",
]
#: States a shot ends a run in.
FINAL_STATES: frozenset[str] = frozenset(
    {"done", "cached", "failed", "uncertain", "skipped", "cancelled", "expired", "excluded"}
)
#: States that leave nothing to do about a take in this run: it has its video, or it is not
#: in ``--only`` (left as it is, on purpose).
_SETTLED: frozenset[str] = frozenset({"done", "cached", "excluded"})


@attrs.define(kw_only=True)
class ShotResult:
    """One shot's progress and outcome; the scheduler fills it in as the shot moves on."""

    #: The unit key: the shot's id for take 1 (so a shot of one take is just its id), else
    #: ``id#k``.
    id: str
    duration: int
    state: ShotState = "queued"
    #: The task of the latest attempt, once the server gave it an id.
    task_id: str | None = None
    #: Every task id this shot created, in order (more than one only with --retry-failed).
    task_ids: list[str] = attrs.Factory(list)
    file: Path | None = None
    sha256: str | None = None
    bytes: int | None = None
    #: Money this shot's tasks cost, refunds taken off.
    cost: Decimal = ZERO_USD
    polls: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str = ""
    code: int | None = None
    warnings: list[str] = attrs.Factory(list)
    #: The shot this is a take of ("" means the shot whose id is `id`).
    shot: str = ""
    #: Which take (1-based).
    take: int = 1
    #: Whether this take is the shot's picked one (its video is ``<id>.mp4``).
    picked: bool = True

    @property
    def shot_id(self) -> str:
        """The id of the shot this is a take of."""
        return self.shot or self.id

    def as_json(self) -> dict[str, object]:
        """Return the take as the `run --json` summary prints it (money as a decimal string)."""
        return {
            "id": self.id,
            "shot": self.shot_id,
            "take": self.take,
            "picked": self.picked,
            "status": self.state,
            "task_id": self.task_id,
            "task_ids": list(self.task_ids),
            "file": None if self.file is None else str(self.file),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "cost": str(self.cost),
            "polls": self.polls,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "error": self.error or None,
            "code": self.code,
            "warnings": list(self.warnings),
        }


@attrs.frozen(kw_only=True)
class RunResult:
    """A finished run: every shot's result, in plan order, and the totals."""

    storyboard: str
    output_dir: Path
    shots: tuple[ShotResult, ...]
    wall_s: float
    interrupted: bool = False
    #: The signal that stopped the run (SIGINT for Ctrl-C, SIGTERM), when interrupted.
    stop_signal: int = 2
    #: True when the bundled mock rendered it: the money is simulated, nothing was charged.
    simulated: bool = False
    #: The contact sheet written after the run, if one was.
    report: Path | None = None
    #: What WaveSpeed charged against what the records say (a real API's run only).
    bill: Bill | None = None
    #: The run's concurrency, and the account's processing limit when the run learned one.
    concurrency: int | None = None
    account_limit: int | None = None

    @property
    def account_limited(self) -> bool:
        """True when the account, not `concurrency`, capped how many tasks rendered at once."""
        return (
            self.account_limit is not None
            and self.concurrency is not None
            and self.account_limit < self.concurrency
        )

    @property
    def spent(self) -> Decimal:
        """Money the run's tasks cost, refunds taken off."""
        return sum((s.cost for s in self.shots), ZERO_USD)

    @property
    def ok(self) -> bool:
        """True when every shot has its video (those not in ``--only`` aside)."""
        return all(s.state in _SETTLED for s in self.shots)

    @property
    def exit_code(self) -> int:
        """0 when every shot has its video, 128 + the signal when stopped (130 for Ctrl-C)."""
        if self.interrupted:
            return 128 + self.stop_signal
        return EXIT_OK if self.ok else EXIT_FAILED

    def count(self, state: str) -> int:
        """How many takes ended in *state* (one per shot unless some shot has several)."""
        return sum(1 for s in self.shots if s.state == state)

    @property
    def shot_count(self) -> int:
        """How many shots the run covered (`shots` holds one result per take)."""
        return len({s.shot_id for s in self.shots})

    def as_json(self) -> dict[str, object]:
        """Return the machine-readable summary `run --json` prints."""
        polls = sum(s.polls for s in self.shots)
        submitted = sum(len(s.task_ids) for s in self.shots)
        document: dict[str, object] = {
            "storyboard": self.storyboard,
            "output_dir": str(self.output_dir),
            "shots": [s.as_json() for s in self.shots],
            "totals": {
                "shots": self.shot_count,
                "takes": len(self.shots),
                "done": self.count("done"),
                "cached": self.count("cached"),
                "failed": self.count("failed"),
                "uncertain": self.count("uncertain"),
                "skipped": self.count("skipped"),
                "cancelled": self.count("cancelled"),
                "expired": self.count("expired"),
                "excluded": self.count("excluded"),
                "spent": str(self.spent),
                "simulated": self.simulated,
                "polls": polls,
                "polls_per_task": round(polls / submitted, 2) if submitted else 0,
                "wall_seconds": round(self.wall_s, 3),
                "account_limit": self.account_limit,
            },
            "interrupted": self.interrupted,
            "report": None if self.report is None else str(self.report),
        }
        if self.bill is not None:
            document["bill"] = self.bill.as_json()
        return document


def format_summary(result: RunResult) -> str:
    """Say how the run went, for people: totals first, then one line per shot.

    Takes not in ``--only`` are named together on one line, not one line each: a subset of
    one shot in thirty is about that one shot.
    """
    parts = [
        f"{result.count(state)} {_SHOWN.get(state, state)}"
        for state in _SUMMARY_ORDER
        if result.count(state)
    ]
    submitted = sum(len(s.task_ids) for s in result.shots)
    polls = sum(s.polls for s in result.shots)
    per_task = f"; {polls / submitted:.1f} polls per task" if submitted else ""
    takes = ""
    if len(result.shots) != result.shot_count:
        takes = f" ({len(result.shots)} takes of {result.shot_count} shots)"
    head = f"{result.storyboard}: {', '.join(parts)}{takes} in {result.wall_s:.1f} s"
    money = (
        f"simulated spend {result.spent} USD (the bundled mock: nothing was charged)"
        if result.simulated
        else f"spent {result.spent} USD"
    )
    lines = [f"{head}; {money}{per_task}"]
    if result.account_limited:
        lines.append(
            f"limited by the account: {result.account_limit} task"
            f"{'s' * (result.account_limit != 1)} processing at once, "
            f"concurrency {result.concurrency}"
        )
    shown = [s for s in result.shots if s.state != "excluded"]
    width = max(len(s.id) for s in shown) if shown else 0
    for s in shown:
        where = str(s.file) if s.file is not None else s.error
        lines.append(f"  {s.id:<{width}}  {s.state:<9}  {s.cost:>6}  {where}")
        lines.extend(f"  {'':<{width}}  warning: {w}" for w in s.warnings)
    left = [s.id for s in result.shots if s.state == "excluded"]
    if left:
        lines.append(f"not in --only, left as they are: {', '.join(left)}")
    if result.bill is not None:
        lines.append(result.bill.summary())
        lines.extend(f"  differs: {line.describe()}" for line in result.bill.differences)
        lines.extend(f"  warning: {w}" for w in result.bill.warnings())
    if result.report is not None:
        lines.append(f"contact sheet: {result.report}")
    if result.interrupted:
        lines.append(
            "interrupted: the tasks above are recorded; run again to pick them up without "
            "paying twice"
        )
    return "\n".join(lines)


_SUMMARY_ORDER = (
    "done",
    "cached",
    "failed",
    "uncertain",
    "expired",
    "skipped",
    "cancelled",
    "excluded",
)
#: How a state reads in the summary (the others read as they are spelled).
_SHOWN = {"excluded": "not in --only", "expired": "output expired"}
