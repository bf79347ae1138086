"""Chain order: sources first, else file order; the same order the first spelling gave."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._shotlist.chains import chain_order
from kling_pipe._shotlist.specs import ChainImage, ImageRef, LocalImage, Shot, UrlImage


def chain_order_by_ids(shots: tuple[Shot, ...]) -> tuple[Shot, ...]:
    """Chain order as first written (by shot id, every shot looked at again): the reference."""
    position = {s.id: i for i, s in enumerate(shots)}
    waiting = {s.id: {src for src in s.chained_from if src in position} for s in shots}
    dependants: dict[str, list[str]] = {s.id: [] for s in shots}
    for shot_id, sources in waiting.items():
        for src in sources:
            dependants[src].append(shot_id)
    ready = [position[i] for i, sources in waiting.items() if not sources]
    heapq.heapify(ready)
    ordered: list[Shot] = []
    while ready:
        shot = shots[heapq.heappop(ready)]
        ordered.append(shot)
        for dep in dependants[shot.id]:
            waiting[dep].discard(shot.id)
            if not waiting[dep]:
                heapq.heappush(ready, position[dep])
    if len(ordered) != len(shots):
        raise ValueError("shot chains form a cycle")
    return tuple(ordered)


IDS = ["a", "b", "c", "d", "e", "f"]
frames: st.SearchStrategy[ImageRef | None] = st.one_of(
    st.none(),
    st.just(UrlImage(url="https://x.example/a.png")),
    st.just(LocalImage(path="a.png")),
    st.builds(
        ChainImage, shot=st.sampled_from([*IDS, "gone"]), frame=st.sampled_from(["first", "last"])
    ),
)
shot_lists = st.lists(
    st.builds(Shot, id=st.sampled_from(IDS), image=frames, last_image=frames), max_size=7
).map(tuple)


def outcome(order: object, shots: tuple[Shot, ...]) -> tuple[str, ...] | str:
    try:
        return tuple(s.id for s in order(shots))  # type: ignore[operator]
    except ValueError as exc:
        return str(exc)


@given(shots=shot_lists)
def test_chain_order_is_the_order_of_the_first_spelling(shots):
    """Cycles, chains to no shot, a shot chained to itself and repeated ids included."""
    assert outcome(chain_order, shots) == outcome(chain_order_by_ids, shots)


@given(first=frames, last=frames)
def test_a_shot_is_chained_from_each_source_once_first_frame_first(first, last):
    shot = Shot(id="s", image=first, last_image=last)
    images = [i for i in (first, last) if isinstance(i, ChainImage)]
    assert shot.chained_from == tuple(dict.fromkeys(i.shot for i in images))


def test_a_shot_list_without_chains_keeps_its_file_order():
    shots = tuple(Shot(id=i) for i in "zyx")
    assert chain_order(shots) == shots


def test_a_source_later_in_the_file_goes_first():
    shots = (Shot(id="a", image=ChainImage(shot="b", frame="last")), Shot(id="b"))
    assert [s.id for s in chain_order(shots)] == ["b", "a"]


def test_a_cycle_is_refused():
    shots = (
        Shot(id="a", image=ChainImage(shot="b", frame="last")),
        Shot(id="b", image=ChainImage(shot="a", frame="last")),
    )
    with pytest.raises(ValueError, match="cycle"):
        chain_order(shots)
