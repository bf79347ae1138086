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


#: Frame URLs a user may write, good and bad: plain ones, odd hosts, ports, other schemes.
odd_urls = st.sampled_from(
    [
        "https://frames.example/a.png",
        "HTTP://Frames.Example:8080/a.png?x=1#top",
        "https://host",
        "http://host:/p",
        "https://host:80x/p",
        "https:///a.png",
        "ftp://example.com/a.png",
        "https://[::1]/a.png",
        "https://[oops/a.png",
        "https://user:pw@host/a.png",
        "https://ho st/a.png",
        "http:/a.png",
        "https://exa\tmple.com/",
        "https://é.example/a.png",
        "http://a..b/",
        " https://host/a.png",
        "javascript://host/a.png",
    ]
) | st.builds(
    "{}{}".format,
    st.sampled_from(["http://", "https://", "HTTPS://", "http:", "https:/"]),
    st.text("aZ09.-_:/?#@[]% \t\né\\", max_size=16),
)


@st.composite
def messy_shot_list_documents(draw: st.DrawFn, max_shots: int = 6) -> dict[str, Any]:
    """A shot-list document of every model, right or wrong anywhere: for comparing checkers.

    Shots name any model (by full id, by path, or one that does not exist) and set any
    model field to a value right or wrong for it; frames are local files (the tests' image
    checks decide from the name: ``bad*`` is damaged, ``wide*`` outside the limits), URLs
    good and bad, and chains to shots that may not exist; keys may be misspelt.
    """
    from kling_pipe._shotlist.catalogue import CATALOGUE  # noqa: PLC0415
    from kling_pipe._shotlist.specs import MODEL_FIELD_NAMES  # noqa: PLC0415

    ids = draw(st.lists(shot_ids, min_size=1, max_size=max_shots))
    models = st.sampled_from(
        [*CATALOGUE, *(e.path for e in CATALOGUE.values()), "kwaivgi/no-such-model", 3]
    )
    files = st.sampled_from(["ok.png", "ok2.png", "bad.png", "wide.png", "tall.png"])
    chains = st.fixed_dictionaries(
        {"shot": st.sampled_from([*ids, "nowhere"]), "frame": st.sampled_from(["first", "last"])}
    )
    images = files | odd_urls | chains | st.integers(0, 3)
    values: dict[str, st.SearchStrategy[Any]] = {
        "negative_prompt": st.text(max_size=5) | st.integers(0, 2),
        "cfg_scale": st.decimals("-1", "2", places=2) | st.booleans(),
        "guidance_scale": st.decimals("-1", "2", places=2),
        "sound": st.booleans() | st.just("yes"),
        "aspect_ratio": st.sampled_from(["16:9", "9:16", "1:1", "4:3"]),
        "multi_prompt": st.lists(
            st.fixed_dictionaries(
                {"prompt": st.sampled_from(["a", "", "b"]), "duration": st.integers(0, 8)}
            ),
            max_size=3,
        ),
    }
    assert set(values) == set(MODEL_FIELD_NAMES)
    keys = {
        "model": models,
        "image": images,
        "last_image": images,
        "duration": st.integers(0, 16) | st.just("5"),
        "takes": st.integers(0, 9),
        "prompt": st.sampled_from(["p", "", "FILL IN: what happens"]) | prompts,
        "durration": st.just(5),
        **values,
    }

    tables = st.dictionaries(st.sampled_from(sorted(keys)), st.none(), max_size=6).flatmap(
        lambda chosen: st.fixed_dictionaries({k: keys[k] for k in chosen})
    )
    shots = []
    for sid in ids:
        table = draw(tables)
        shots.append({"id": sid, **table} if draw(st.integers(0, 9)) else table)
    storyboard: dict[str, Any] = {"name": "messy"}
    if draw(st.booleans()):
        storyboard["model"] = draw(models)
    doc: dict[str, Any] = {"version": 1, "storyboard": storyboard, "shots": shots}
    if draw(st.booleans()):
        doc["defaults"] = draw(tables)
    return doc


@st.composite
def model_shot_list_documents(draw: st.DrawFn, max_shots: int = 6) -> dict[str, Any]:
    """A valid shot-list document whose shots use any model, with fields it takes."""
    from kling_pipe._shotlist.catalogue import CATALOGUE  # noqa: PLC0415

    ids = draw(st.lists(shot_ids, min_size=1, max_size=max_shots, unique=True))
    shots = []
    for sid in ids:
        entry = draw(st.sampled_from(list(CATALOGUE.values())))
        table: dict[str, Any] = {"id": sid, "model": entry.path, **draw(model_field_values(entry))}
        if entry.takes_multi_prompt and draw(st.booleans()):
            parts = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
            table["multi_prompt"] = [
                {"prompt": f"part {n}", "duration": d} for n, d in enumerate(parts)
            ]
            if sum(parts) not in entry.durations.allowed:
                table["multi_prompt"] = [{"prompt": "all", "duration": entry.durations.default}]
        else:
            table["prompt"] = draw(prompts)
            table["duration"] = draw(st.sampled_from(entry.durations.allowed))
        if entry.takes_image:
            table["image"] = draw(st.just("frames/puddle.png") | urls)
        if draw(st.booleans()):
            table["takes"] = draw(st.integers(1, 8))
        shots.append(table)
    storyboard: dict[str, Any] = {"name": "models", "max_cost": draw(money)}
    return {"version": 1, "storyboard": storyboard, "defaults": {}, "shots": shots}
