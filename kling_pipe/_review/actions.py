"""The page's buttons: each calls the very function its command calls, and says what it did.

One implementation, two doors: `pick` is `pick_take`, `approve` is `approve_shots`,
`unapprove` is `unapprove_shots`, `mark` and `unmark` are `mark_for_rerender` and `unmark`,
and what they answer is what the commands print (`format_pick`, `format_approved`,
`format_unapproved`, `format_marked`). A refusal is the function's own `KlingPipeError`,
shown in the page word for word. ``pick-preview`` is `preview_pick`: what a pick makes stale
and what rendering it again costs, before the user confirms.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from kling_pipe._outputs.picks import format_pick, pick_take, preview_pick
from kling_pipe._outputs.rerender import format_marked, mark_for_rerender, unmark
from kling_pipe._outputs.versions import (
    approve_shots,
    format_approved,
    format_unapproved,
    unapprove_shots,
)
from kling_pipe._records.assessment import is_simulated
from kling_pipe._shotlist.specs import ShotList


def _source(shotlist: ShotList) -> Path:
    """Spell the shot list as the user would type it: relative to here when under here."""
    try:
        return shotlist.source.relative_to(Path.cwd())
    except ValueError:
        return shotlist.source


def _run_command(shotlist: ShotList) -> str:
    return f"kling-pipe run {_source(shotlist)}"


def pick(shotlist: ShotList, shot: str, take: int | None, *, origin: str) -> str:
    """`kling-pipe pick`: make *take* the shot's video (blocking; refusals raise)."""
    assert take is not None  # the server checks the request first
    return format_pick(pick_take(shotlist, shot, take, origin=origin), _run_command(shotlist))


def pick_preview(shotlist: ShotList, shot: str, take: int | None, *, origin: str) -> str:
    """Say what picking *take* would make stale, and its cost; change nothing."""
    assert take is not None
    result = preview_pick(shotlist, shot, take, origin=origin)
    if not result.changed:
        return f"Take {take} of {shot} is already the picked take."
    money = " (simulated: the bundled mock)" if result.simulated else ""
    lines = [f"Pick take {take} of {shot} (now take {result.previous})?"]
    if result.stale:
        listed = ", ".join(f"{s.id} ({s.cost} USD)" for s in result.stale)
        lines.append(f"Stale after it, chained from {shot}: {listed}.")
        lines.append(f"Rendering them again costs {result.stale_cost} USD{money}.")
    elif result.ready:
        lines.append(
            f"Chained from {shot}, already rendered from take {take}: {', '.join(result.ready)}."
        )
    else:
        lines.append(f"Nothing is chained from {shot}: nothing to render again.")
    return "\n".join(lines)


def approve(shotlist: ShotList, shot: str, take: int | None, *, origin: str) -> str:
    """`kling-pipe approve`: freeze the shot on its current render."""
    del take
    return format_approved(approve_shots(shotlist, [shot], origin=origin), _source(shotlist))


def unapprove(shotlist: ShotList, shot: str, take: int | None, *, origin: str) -> str:
    """`kling-pipe unapprove`: lift the shot's approval."""
    del take
    done = unapprove_shots(shotlist, [shot], origin=origin)
    return format_unapproved(done, _run_command(shotlist), simulated=is_simulated(origin))


def mark(shotlist: ShotList, shot: str, take: int | None, *, origin: str) -> str:
    """`kling-pipe mark`: the next run renders the shot's current take again."""
    del take
    return format_marked(mark_for_rerender(shotlist, shot, origin=origin), _run_command(shotlist))


def unmark_(shotlist: ShotList, shot: str, take: int | None, *, origin: str) -> str:
    """`kling-pipe unmark`: take the mark back."""
    del take
    return format_marked(unmark(shotlist, shot, origin=origin), _run_command(shotlist))


Action = Callable[..., str]

#: By the name in ``POST /api/<name>``.
ACTIONS: Final[dict[str, Action]] = {
    "approve": approve,
    "mark": mark,
    "pick": pick,
    "pick-preview": pick_preview,
    "unapprove": unapprove,
    "unmark": unmark_,
}
