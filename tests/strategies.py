"""Hypothesis strategies for shot lists, every bound mirrored from the contract explicitly."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from kling_pipe._shotlist.validate import PLACEHOLDER

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_-"
shot_ids = st.text(ID_ALPHABET, min_size=1, max_size=64)
#: Any prompt a user may write: not blank, and not init's placeholder (an error on purpose).
prompts = st.text(min_size=1, max_size=200).filter(
    lambda s: s.strip() != "" and not s.lstrip().startswith(PLACEHOLDER)
)
urls = st.builds(
    "https://{}.example.com/{}.png".format,
    st.text("abcdefghij", min_size=1, max_size=8),
    st.text("abcdefghij0123456789", min_size=1, max_size=8),
)
money = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False)

#: TOML-representable leaves and containers, for documents of any shape.
toml_leaves = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | st.text(max_size=20)
)
toml_values = st.recursive(
    toml_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def shot_tables(draw: st.DrawFn, sid: str, earlier: list[str]) -> dict[str, Any]:
    """One valid `[[shots]]` table; chains only point at *earlier* shots, so none loops."""
    sources = [st.just("frames/puddle.png"), urls]
    if earlier:
        sources.append(
            st.fixed_dictionaries(
                {"shot": st.sampled_from(earlier), "frame": st.sampled_from(["first", "last"])}
            )
        )
    images = st.one_of(*sources)
    table: dict[str, Any] = {"id": sid, "prompt": draw(prompts), "image": draw(images)}
    if draw(st.booleans()):
        table["last_image"] = draw(images)
        table["duration"] = draw(st.integers(min_value=3, max_value=10))
    elif draw(st.booleans()):
        table["duration"] = draw(st.sampled_from([5, 10]))
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        table["takes"] = draw(st.integers(min_value=1, max_value=8))
    return table


@st.composite
def shot_list_documents(draw: st.DrawFn, max_shots: int = 8) -> dict[str, Any]:
    """A valid shot-list document, as TOML parses it (floats as Decimal)."""
    ids = draw(st.lists(shot_ids, min_size=1, max_size=max_shots, unique=True))
    shots = [draw(shot_tables(sid, ids[:i])) for i, sid in enumerate(ids)]
    storyboard: dict[str, Any] = {"name": draw(st.text(ID_ALPHABET, min_size=1, max_size=20))}
    if draw(st.booleans()):
        storyboard["max_cost"] = draw(money)
    if draw(st.booleans()):
        storyboard["budget"] = draw(money)
    if draw(st.booleans()):
        storyboard["concurrency"] = draw(st.integers(min_value=1, max_value=64))
    doc: dict[str, Any] = {"version": 1, "storyboard": storyboard, "shots": shots}
    if draw(st.booleans()):
        doc["defaults"] = {"prompt_prefix": draw(st.text(max_size=30))}
    return doc


def to_toml(value: Any, key: str | None = None) -> str:
    """Write a document as TOML, every table inline: enough for property tests."""
    if key is None:
        return "".join(f"{json.dumps(k)} = {to_toml(v, k)}\n" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        # JSON escapes are TOML escapes, except that TOML also forbids a raw DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(to_toml(v, "") for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {to_toml(v, k)}" for k, v in value.items()) + "}"


def catalogue_entries() -> st.SearchStrategy[Any]:
    """Any model of the Kling catalogue."""
    from kling_pipe._shotlist.catalogue import CATALOGUE  # noqa: PLC0415

    return st.sampled_from(list(CATALOGUE.values()))


@st.composite
def model_field_values(draw: st.DrawFn, entry: Any) -> dict[str, Any]:
    """Some of *entry*'s optional fields, each set to a value the model takes."""
    chosen: dict[str, Any] = {}
    for field in entry.fields:
        if field.kind == "shots" or not draw(st.booleans()):
            continue
        if field.kind == "boolean":
            chosen[field.name] = draw(st.booleans())
        elif field.kind == "choice":
            chosen[field.name] = draw(st.sampled_from(field.choices))
        elif field.kind == "number":
            chosen[field.name] = draw(
                st.decimals(min_value=field.minimum, max_value=field.maximum, places=2)
            )
        else:
            chosen[field.name] = draw(st.text(min_size=1, max_size=20))
    return chosen
