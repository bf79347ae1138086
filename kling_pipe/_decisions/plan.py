"""What a run would do and what it would cost, decided before anything is sent.

Pure: a shot list and the set of shots already rendered go in, a `Plan` comes out. `plan`
prints it, `run` refuses it when it breaks the budget, and the scheduler follows its order.

A shot of N takes is N *render units* (`PlannedTake`), each its own paid task; the plan keeps
one `PlannedShot` per shot (what `plan` prints and `plan --json` lists, with ``"takes": N`` and
the shot's total) holding its takes, and `Plan.units` lists every take in the order they may
start, which is what the engine admits. A chained shot's takes wait for the *picked* take of
their source (take 1 unless `kling-pipe pick` chose another): its frame comes from that video.
Statuses are given per unit key (a shot's id is the key of its take 1, so a shot of one take
is planned exactly as before takes existed).

A *subset* (``--only``, `kling_pipe._decisions.selection`) renders the units it names and the
chain sources they cannot start without (`Plan.needs`: named and priced, since they are paid
for too); every other unit is left as it is: ``cached`` if it is, else ``excluded`` ("not in
--only"), which costs nothing and is neither rendered nor counted as a failure.

The storyboard's ``budget`` is what the whole film may cost across every run; `Plan.spent` is
what its records say was spent before this run (given by the caller: the records are not
this module's), so `Plan.film_budget_problem` can refuse a run that would pass it.

Each shot is priced by its own model's rule (`catalogue.price_of`: per second with its
minimum billed seconds, or the price of a default run). A render no confirmed rule prices
is planned at 0 and marked *unpriced* ("price unconfirmed"): the caller may pass *price*,
a function that knows more (against the bundled mock, the mock's own price list), and
`unpriced_problem` decides, in one place, whether a run may go ahead without a price.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from decimal import Decimal
from typing import Literal

import attrs

from kling_pipe._decisions.selection import select_units
from kling_pipe._shotlist import catalogue, rules
from kling_pipe._shotlist.chains import chain_order
from kling_pipe._shotlist.fingerprint import kept_takes
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import (
    ChainImage,
    ImageRef,
    LocalImage,
    Shot,
    ShotList,
    UrlImage,
    unit_key,
)
from kling_pipe.exceptions import Problem

#: render: a new task is paid for; cached: the video is on disk; resume: a task from an
#: earlier run is polled or its output fetched again (already paid); reconcile: a lost submit
#: is looked up in the history, and sent again only if it is not there (may be paid);
#: uncertain: a task that may exist and could not be found, left alone; copy: the same
#: inputs as a unit this run renders (or resumes), whose video it gets, for nothing;
#: expired: a task finished but never downloaded, whose output WaveSpeed no longer keeps,
#: left alone (``--rerender`` pays for a new one); excluded: not in ``--only``, left as it is;
#: approved: a take of an approved shot, frozen: nothing is rendered, whatever changed.
ShotStatus = Literal[
    "render",
    "cached",
    "resume",
    "reconcile",
    "uncertain",
    "copy",
    "expired",
    "excluded",
    "approved",
]
_FREE: frozenset[str] = frozenset(
    {"cached", "resume", "uncertain", "copy", "expired", "excluded", "approved"}
)
#: Which status names a shot whose takes differ: the first of these any take has.
_SUMMARY_ORDER: tuple[ShotStatus, ...] = (
    "render",
    "reconcile",
    "resume",
    "uncertain",
    "expired",
    "copy",
    "excluded",
    "approved",
    "cached",
)
#: How a status reads in the tables people see (the others read as they are spelled).
_SHOWN: dict[str, str] = {"excluded": "not in --only"}
#: Why a unit a subset needs is not there yet, by its status (`Need`).
_NEEDED_BECAUSE: dict[str, str] = {
    "render": "no current video",
    "reconcile": "a lost submit to settle first",
    "resume": "in flight, already paid",
    "copy": "a copy of an identical take",
    "uncertain": "uncertain: it has no video until you settle it",
    "expired": "output expired: it has no video until rendered again",
}
#: Statuses of a unit whose video this run produces, which an identical unit may copy.
_PRODUCES: frozenset[str] = frozenset({"render", "resume", "reconcile"})


@attrs.frozen(kw_only=True)
class PlannedTake:
    """One render unit: one take of one shot, its own task."""

    shot: Shot
    #: 1-based.
    take: int
    status: ShotStatus
    #: What one render costs, whether or not this plan renders it.
    unit_cost: Decimal
    #: What this plan spends on the take: 0 when it is cached or already paid.
    cost: Decimal
    #: Unit keys this take waits for: the picked take of each shot it chains from.
    sources: tuple[str, ...] = ()
    #: For a copy: the unit with the same inputs whose video it gets.
    copy_of: str | None = None
    #: False when no confirmed rule prices a render (`unit_cost` is then 0, not a price).
    priced: bool = True

    @property
    def id(self) -> str:
        """The unit key: the shot's id for take 1, ``id#k`` for take k."""
        return unit_key(self.shot.id, self.take)


@attrs.frozen(kw_only=True)
class PlannedShot:
    """One shot's place in the plan, with all its takes."""

    shot: Shot
    #: The shot's status: its takes' when they agree, else the first that calls for work.
    status: ShotStatus
    #: What one render (one take) costs, whether or not this plan renders it.
    unit_cost: Decimal
    #: What this plan spends on the shot, all takes together: 0 when every take is cached.
    cost: Decimal
    #: Every take, take 1 first (a shot of one take has one).
    takes: tuple[PlannedTake, ...] = ()
    #: The take whose video is the shot's (and its chains').
    pick: int = 1
    #: Beside an approved shot's status: "" or why ("inputs changed: prompt").
    note: str = ""
    #: False when no confirmed rule prices a render of it ("price unconfirmed").
    priced: bool = True

    @property
    def id(self) -> str:
        """The shot's id."""
        return self.shot.id


@attrs.frozen(kw_only=True)
class Need:
    """A unit a subset cannot start without: a chain source not in ``--only``, not rendered."""

    #: The unit key of the source.
    unit: str
    #: The units of the run that wait for it (in plan order).
    needed_by: tuple[str, ...]
    #: Its status in the plan (render, resume, reconcile, ...).
    status: ShotStatus
    #: What this plan spends on it.
    cost: Decimal

    def describe(self) -> str:
        """Say it the way `plan` and the spend confirmation do.

        ``gutter needs puddle (no current video): +0.420``
        """
        who = ", ".join(self.needed_by)
        verb = "needs" if len(self.needed_by) == 1 else "need"
        why = _NEEDED_BECAUSE.get(self.status, self.status)
        return f"{who} {verb} {self.unit} ({why}): +{self.cost}"


@attrs.frozen(kw_only=True)
class Plan:
    """The shots in the order they may start (chains after their sources), with the money."""

    storyboard: str
    model: str
    shots: tuple[PlannedShot, ...]
    total_cost: Decimal
    max_cost: Decimal | None
    #: Cost if every rendered shot failed and was retried `retry_failed` times.
    worst_case_cost: Decimal
    retry_failed: int = 0
    #: Every take of every shot, in the order they may start (what the engine admits).
    units: tuple[PlannedTake, ...] = ()
    #: The names given to ``--only``, or None when the plan covers every unit.
    only: tuple[str, ...] | None = None
    #: Units a subset needs that ``--only`` did not name (chain sources not rendered).
    needs: tuple[Need, ...] = ()
    #: The storyboard's budget for the whole film across runs (USD), if it has one.
    budget: Decimal | None = None
    #: What the records say this storyboard spent before this plan, at the plan's backend.
    spent: Decimal = ZERO_USD

    @property
    def unpriced(self) -> tuple[PlannedTake, ...]:
        """The takes this plan would pay for at a price nobody confirmed."""
        return tuple(u for u in self.units if not u.priced and u.status not in _FREE)

    @property
    def excluded(self) -> tuple[PlannedTake, ...]:
        """The units ``--only`` leaves as they are (neither cached nor rendered)."""
        return tuple(u for u in self.units if u.status == "excluded")

    @property
    def budget_left(self) -> Decimal | None:
        """What the film's budget still allows before this plan (None: no budget)."""
        return None if self.budget is None else self.budget - self.spent

    @property
    def over_film_budget(self) -> bool:
        """True when what was spent and what this plan costs pass the film's budget."""
        return self.budget is not None and self.spent + self.total_cost > self.budget

    def film_budget_problem(self) -> Problem | None:
        """Explain how the plan passes the storyboard's budget, or return None when it does not."""
        if not self.over_film_budget:
            return None
        return Problem(
            "storyboard.budget",
            f"{self.spent} USD spent on this storyboard so far and {self.total_cost} USD for "
            f"{self.what_to_render()} in this run make {self.spent + self.total_cost}, more "
            f"than its budget {self.budget}; raise budget or render fewer shots",
        )

    @property
    def over_budget(self) -> bool:
        """True when the shots to render cost more than `max_cost` allows."""
        return self.max_cost is not None and self.total_cost > self.max_cost

    @property
    def to_render(self) -> tuple[PlannedShot, ...]:
        """The shots this plan may pay for (at a confirmed price or not)."""
        return tuple(s for s in self.shots if s.cost > 0 or _unpriced(s))

    @property
    def takes_to_render(self) -> tuple[PlannedTake, ...]:
        """The takes (render units) this plan may pay for."""
        return tuple(u for u in self.units if u.cost > 0 or _unpriced(u))

    def what_to_render(self) -> str:
        """Say how much is rendered: "3 shots", or "2 shots (3 takes)" when takes differ."""
        return describe_renders(len(self.to_render), len(self.takes_to_render))

    def budget_problem(self) -> Problem | None:
        """Explain how the plan breaks `max_cost`, or return None when it does not."""
        if not self.over_budget:
            return None
        return Problem(
            "storyboard.max_cost",
            f"the plan costs {self.total_cost} USD for {self.what_to_render()} to render, "
            f"more than max_cost {self.max_cost}; raise max_cost or render fewer shots",
        )


def _unpriced(item: PlannedShot | PlannedTake) -> bool:
    """Whether this plan would pay for *item* at a price nobody confirmed."""
    return not item.priced and item.status not in _FREE


def describe_renders(shots: int, takes: int) -> str:
    """Say "1 shot", "3 shots", or "2 shots (3 takes)" when some shot renders several takes."""
    text = f"{shots} shot{'s' * (shots != 1)}"
    return text if takes == shots else f"{text} ({takes} take{'s' * (takes != 1)})"


#: Prices one render of a shot (None: no confirmed price); `plan`'s *price*.
PriceOf = Callable[[Shot], "Decimal | None"]


def catalogue_price(shot: Shot) -> Decimal | None:
    """Price one render of *shot* by its model's catalogue rule (None: unconfirmed)."""
    entry = catalogue.model_entry(shot.model)
    if entry.price.usd_per_second is not None:  # by the second: no field changes the price
        return catalogue.price_of(entry, shot.duration)
    return catalogue.price_of(entry, shot.duration, shot.model_fields)


def unpriced_problem(p: Plan, *, real_money: bool) -> Problem | None:
    """Decide whether a run may pay for renders no confirmed rule prices (None: it may).

    Against the bundled mock or a local server nothing real is spent, so it may; against
    WaveSpeed kling-pipe refuses to spend an amount it cannot state beforehand.
    """
    if not real_money or not p.unpriced:
        return None
    shots = ", ".join(dict.fromkeys(f"{u.id} ({u.shot.model})" for u in p.unpriced))
    return Problem(
        "shots",
        f"price unconfirmed for {shots}: no WaveSpeed page states what it costs, and "
        "kling-pipe does not spend an amount it cannot state; use a model with a confirmed "
        "price (kling-pipe's README, section Models)",
    )


def plan(  # noqa: PLR0913 - keyword-only inputs, each with a default
    shotlist: ShotList,
    cached: Collection[str] = (),
    *,
    statuses: Mapping[str, ShotStatus] | None = None,
    picks: Mapping[str, int] | None = None,
    retry_failed: int = 0,
    fingerprints: Mapping[str, str] | None = None,
    only: Collection[str] | None = None,
    spent: Decimal = ZERO_USD,
    notes: Mapping[str, str] | None = None,
    price: PriceOf = catalogue_price,
) -> Plan:
    """Plan a run of *shotlist*: takes in *cached* cost nothing, others as *statuses* say.

    *cached* and *statuses* are keyed by unit key (`kling_pipe._shotlist.specs.unit_key`: a
    shot's id names its take 1); a take in neither is rendered. *picks* gives each shot's
    picked take (1 when absent), which its chains wait for. *retry_failed* is how many times
    a failed take may be resubmitted; it does not change the expected total (WaveSpeed
    refunds failed tasks) but sets the worst case shown. With *fingerprints* (by unit key),
    units that would send the very same request are rendered once: the first in plan order
    that this run produces, the others (`copy`) get its video and cost nothing.

    *only* (names given to ``--only``: ids, ``id#k``, globs) restricts the plan to the units
    they select and the chain sources those need (`Plan.needs`); any other unit is
    ``excluded`` unless it is cached. A name that selects nothing raises `SelectionError`.
    *spent* is what the storyboard's records say was spent before, for its ``budget``.
    *notes* (by shot id) are shown beside a shot's status (an approved shot's "inputs
    changed: prompt"). *price* prices one render of a shot (see the module).
    """
    given = dict(statuses or {})
    given.update(dict.fromkeys(cached, "cached"))
    picked = {s.id: _pick_of(s, picks) for s in shotlist.shots}
    model = shotlist.storyboard.model
    ordered = chain_order(shotlist.shots)
    included, needed_by = (
        (None, {}) if only is None else _subset(shotlist, ordered, only, picked, given)
    )
    planned: list[PlannedShot] = []
    units: list[PlannedTake] = []
    producing: dict[str, str] = {}  # fingerprint -> the unit this run produces it with
    noted = notes or {}
    for shot in ordered:
        quoted = price(shot)
        unit = ZERO_USD if quoted is None else quoted
        sources = tuple(unit_key(src, picked.get(src, 1)) for src in shot.chained_from)
        takes: list[PlannedTake] = []
        for take in kept_takes(shot.takes, picked[shot.id]):
            key = unit_key(shot.id, take)
            status = given.get(key, "render")
            if included is not None and key not in included and status != "cached":
                status = "excluded"
            copy_of = None
            fingerprint = None if fingerprints is None else fingerprints.get(key)
            if fingerprint is not None and status in _PRODUCES:
                original = producing.setdefault(fingerprint, key)
                if original != key and status == "render":
                    status, copy_of = "copy", original
            cost = ZERO_USD if status in _FREE else unit
            takes.append(
                PlannedTake(
                    shot=shot,
                    take=take,
                    status=status,
                    unit_cost=unit,
                    cost=cost,
                    sources=sources,
                    copy_of=copy_of,
                    priced=quoted is not None,
                )
            )
        units.extend(takes)
        planned.append(
            PlannedShot(
                shot=shot,
                status=_summary([t.status for t in takes]),
                unit_cost=unit,
                cost=sum((t.cost for t in takes), ZERO_USD),
                takes=tuple(takes),
                pick=picked[shot.id],
                note=noted.get(shot.id, ""),
                priced=quoted is not None,
            )
        )
    total = sum((u.cost for u in units), ZERO_USD)
    # A resumed task that fails may be resubmitted too: the worst case counts it.
    retryable = sum(
        (u.unit_cost for u in units if u.status in ("render", "resume", "reconcile")), ZERO_USD
    )
    return Plan(
        storyboard=shotlist.storyboard.name,
        model=model,
        shots=tuple(planned),
        total_cost=total,
        max_cost=shotlist.storyboard.max_cost,
        worst_case_cost=total + retryable * retry_failed,
        retry_failed=retry_failed,
        units=tuple(units),
        only=None if only is None else tuple(only),
        needs=_needs(needed_by, units) if needed_by else (),
        budget=shotlist.storyboard.budget,
        spent=spent,
    )


def _needs(needed_by: Mapping[str, set[str]], units: list[PlannedTake]) -> tuple[Need, ...]:
    """Each unit a subset needs and who needs it, in plan order (`Plan.needs`)."""
    by_key = {u.id: u for u in units}
    position = {key: n for n, key in enumerate(by_key)}
    return tuple(
        Need(
            unit=key,
            needed_by=tuple(sorted(by, key=position.__getitem__)),
            status=by_key[key].status,
            cost=by_key[key].cost,
        )
        for key, by in sorted(needed_by.items(), key=lambda kv: position[kv[0]])
    )


def _subset(
    shotlist: ShotList,
    ordered: tuple[Shot, ...],
    only: Collection[str],
    picked: Mapping[str, int],
    given: Mapping[str, ShotStatus],
) -> tuple[set[str], dict[str, set[str]]]:
    """Return the units a subset renders, and each needed source with who needs it.

    Chain order puts a source before the shots chained from it, so walking it backwards sees
    every unit that needs a source before the source itself: its own sources follow in turn.
    A source that is cached is not needed (its video is there).
    """
    included = set(select_units(shotlist, only, picked))
    needed_by: dict[str, set[str]] = {}
    for shot in reversed(ordered):
        for take in kept_takes(shot.takes, picked[shot.id]):
            unit = unit_key(shot.id, take)
            if unit not in included:
                continue
            for src in shot.chained_from:
                source = unit_key(src, picked.get(src, 1))
                if given.get(source, "render") == "cached":
                    continue
                if source not in included or source in needed_by:
                    needed_by.setdefault(source, set()).add(unit)
                included.add(source)
    return included, needed_by


def _pick_of(shot: Shot, picks: Mapping[str, int] | None) -> int:
    """Return the shot's picked take: one beyond its takes is kept (`kept_takes`)."""
    take = (picks or {}).get(shot.id, 1)
    return take if 1 <= take <= rules.MAX_TAKES else 1


def _summary(statuses: Sequence[ShotStatus]) -> ShotStatus:
    if len(statuses) == 1 and statuses[0] in _SUMMARY_ORDER:
        return statuses[0]  # a shot of one take, as most are
    present = set(statuses)
    return next(s for s in _SUMMARY_ORDER if s in present)


def describe_image(image: ImageRef, picks: Mapping[str, int] | None = None) -> str:
    """Say where a frame comes from, in a few words for the plan table."""
    match image:
        case LocalImage(path=path):
            return path
        case UrlImage(url=url):
            return url
        case ChainImage(shot=shot, frame=frame):
            take = (picks or {}).get(shot, 1)
            return f"{frame} frame of {shot}" + (f" (take {take})" if take != 1 else "")


def plan_as_json(p: Plan) -> dict[str, object]:
    """Return the plan in the documented `plan --json` shape, money as decimal strings.

    One entry per shot: ``takes`` is how many renders it has, ``cost`` what this plan spends
    on all of them, ``status`` the shot's (see `PlannedShot.status`), ``pick`` the take whose
    video is the shot's, and ``take_status`` each take's status, take 1 first. With
    ``--only``: ``only`` (the names given) and ``needs`` (chain sources it needs: ``id``,
    ``needed_by``, ``status``, ``cost``). A shot on another model than the storyboard's names
    it (``model``); one this plan would pay for at a price nobody confirmed says so
    (``price_unconfirmed``, its ``cost`` 0). With a storyboard ``budget``: ``budget`` (``budget``,
    ``spent`` before, ``this_run``, ``left`` after it).
    """
    document: dict[str, object] = {
        "storyboard": p.storyboard,
        "model": p.model,
        "shots": [
            {
                "id": s.id,
                "duration": s.shot.duration,
                "takes": s.shot.takes,
                "cost": str(s.cost),
                "status": s.status,
                "pick": s.pick,
                "take_status": [t.status for t in s.takes],
                **({"note": s.note} if s.note else {}),
                **({"model": s.shot.model} if s.shot.model != p.model else {}),
                **({"price_unconfirmed": True} if _unpriced(s) else {}),
            }
            for s in p.shots
        ],
        "total_cost": str(p.total_cost),
        "max_cost": None if p.max_cost is None else str(p.max_cost),
    }
    if p.only is not None:
        document["only"] = list(p.only)
        document["needs"] = [
            {
                "id": n.unit,
                "needed_by": list(n.needed_by),
                "status": n.status,
                "cost": str(n.cost),
            }
            for n in p.needs
        ]
    budget = budget_as_json(p)
    if budget is not None:
        document["budget"] = budget
    return document


def budget_as_json(p: Plan) -> dict[str, str] | None:
    """Return the film's budget as `plan --json` and `status --json` show it (None: no budget)."""
    if p.budget is None or p.budget_left is None:
        return None
    return {
        "budget": str(p.budget),
        "spent": str(p.spent),
        "this_run": str(p.total_cost),
        "left": str(p.budget_left - p.total_cost),
    }


def format_budget(p: Plan, *, this_run: str = "this run") -> str | None:
    """Say where the film's budget stands: spent so far, this run, what is left (None: none).

    ``budget 12.00 USD: 8.40 spent so far, 2.10 this run, 1.50 left`` (or how far over).
    """
    if p.budget is None:
        return None
    after = p.budget - p.spent - p.total_cost
    head = f"budget {p.budget} USD: {p.spent} spent so far, {p.total_cost} {this_run}"
    if after < 0:
        return f"{head}: {-after} over the budget"
    return f"{head}, {after} left"


def _status_cell(s: PlannedShot) -> str:
    """Fill the status column: the shot's status, or how its takes differ ("cached 1, render 2")."""
    counts = {status: sum(t.status == status for t in s.takes) for status in _SUMMARY_ORDER}
    shown = [f"{_SHOWN.get(status, status)} {n}" for status, n in counts.items() if n]
    cell = _SHOWN.get(s.status, s.status) if len(shown) <= 1 else ", ".join(shown)
    return f"{cell} ({s.note})" if s.note else cell


def _cost_cell(s: PlannedShot) -> str:
    """Fill the cost column: the cost, or "price unconfirmed" when no rule prices it."""
    if _unpriced(s):
        return "price unconfirmed"
    return str(s.cost)


def _takes_cell(s: PlannedShot) -> str:
    """Fill the takes column: how many, and a pick kept past a lowered ``takes``."""
    kept = s.pick > s.shot.takes
    return f"{s.shot.takes} (take {s.pick} picked)" if kept else str(s.shot.takes)


def _expired_lines(p: Plan) -> list[str]:
    """Name each take whose output expired, and what rendering it anew costs (never silently)."""
    return [
        f"{u.id}: output expired (finished, never downloaded; WaveSpeed keeps outputs 7 days); "
        f"--rerender {u.id} renders it anew: +{u.unit_cost}"
        for u in p.units
        if u.status == "expired"
    ]


def format_plan(p: Plan) -> str:
    """Render the plan as the table `kling-pipe plan` prints for people.

    A ``takes`` column appears when some shot has more than one take; each take costs the
    shot's price, and a shot's cost is what all of its takes to render cost together.
    """
    with_takes = any(s.shot.takes != 1 or s.pick != 1 for s in p.shots)
    with_models = any(s.shot.model != p.model for s in p.shots)
    picks = {s.id: s.pick for s in p.shots}
    header = (
        "#",
        "id",
        "duration",
        *(("takes",) if with_takes else ()),
        *(("model",) if with_models else ()),
        "frames",
        "cost",
    )
    rows = [(*header, "status")]
    for n, s in enumerate(p.shots, 1):
        frames = " -> ".join(describe_image(i, picks) for i in s.shot.images) or "(text only)"
        takes = (_takes_cell(s),) if with_takes else ()
        model = (catalogue.model_entry(s.shot.model).path,) if with_models else ()
        rows.append(
            (
                str(n),
                s.id,
                f"{s.shot.duration} s",
                *takes,
                *model,
                frames,
                _cost_cell(s),
                _status_cell(s),
            )
        )
    right = {0, len(header) - 1, *((3,) if with_takes else ())}
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    lines = [f"{p.storyboard}  ({p.model})"]
    for row in rows:
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    seconds = sum(u.shot.duration for u in p.takes_to_render)
    total = f"total: {p.total_cost} USD for {p.what_to_render()} to render ({seconds} s)"
    free = sum(1 for s in p.shots if s.cost == 0 and s.status != "excluded" and not _unpriced(s))
    if free:
        total += f"; {free} already rendered or paid for"
    if p.max_cost is not None:
        total += f", max_cost {p.max_cost}"
    lines.extend(need.describe() for need in p.needs)
    lines.extend(_expired_lines(p))
    if p.unpriced:
        total += f"; {len(p.unpriced)} at a price nobody confirmed, not counted"
    lines.append(total)
    if p.only is not None:
        left = len({u.shot.id for u in p.excluded})
        lines.append(
            f"--only {' '.join(p.only)}: "
            + (
                f"{left} other shot{'s' * (left != 1)} not in --only, left as they are"
                if left
                else "nothing else needs rendering"
            )
        )
    budget = format_budget(p)
    if budget is not None:
        lines.append(budget)
    if p.retry_failed:
        lines.append(
            f"worst case with --retry-failed {p.retry_failed}: {p.worst_case_cost} USD "
            "(failed tasks are refunded by WaveSpeed; retries are paid again)"
        )
    return "\n".join(lines)
