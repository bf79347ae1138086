"""The validator's shortcuts tell exactly what the generic checks tell, on any document.

Validation of a large shot list takes shortcuts: a plain http(s) URL is told by a pattern
instead of `urlsplit`, a table whose keys are all known is not walked key by key, each
model's key rules are worked out once per pass, and each image file is measured once. Each
test here compares a shortcut with the check it stands for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._shotlist import catalogue, validate
from kling_pipe._shotlist.images import ImageMeasures
from kling_pipe._shotlist.specs import MODEL_FIELD_NAMES
from kling_pipe._shotlist.validate import Validated, validate_document
from tests.strategies import messy_shot_list_documents, odd_urls, shot_list_documents

#: Fake files: a damaged one, and two outside Kling's image limits.
SIZES = {"wide.png": (1000, 300), "tall.png": (300, 1000)}


def fake_check(path: Path) -> str | None:
    return f'"{path}" is damaged' if path.name.startswith("bad") else None


def fake_measure(path: Path) -> ImageMeasures:
    width, height = SIZES.get(path.name, (640, 480))
    return ImageMeasures(width=width, height=height, size_bytes=1000)


def validated(doc: dict[str, Any]) -> Validated | str:
    """Validate *doc* with the fake files; an exception's type and text if one escapes."""
    try:
        return validate_document(
            doc, base_dir=Path("board"), check_image=fake_check, measure_image=fake_measure
        )
    except Exception as exc:  # noqa: BLE001 - the comparison covers failures too
        return f"{type(exc).__name__}: {exc}"


def _model_keys_every_time(self: Any, entry: catalogue.ModelEntry) -> Any:
    """Work a model's key rules out at every shot, as each shot's check once did."""
    takes = validate._takes_keys(entry)
    refused = tuple(k for k in ("image", "last_image", *MODEL_FIELD_NAMES) if k not in takes)
    fields = tuple(entry.field(k) for k in MODEL_FIELD_NAMES if entry.field(k) is not None)
    return takes, refused, fields


@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "hTtPs"]),
    host=st.text("abcXYZ019.-", min_size=1, max_size=12),
    port=st.none() | st.text("0123456789", max_size=5),
    rest=st.text(max_size=12),
    end=st.sampled_from(["", "/", "?", "#"]),
)
def test_a_plain_url_is_one_urlsplit_finds_an_http_scheme_and_a_host_in(
    scheme, host, port, rest, end
):
    url = f"{scheme}://{host}{'' if port is None else ':' + port}{end}{rest if end else ''}"
    assert validate._PLAIN_URL.match(url)
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https")
    assert parts.hostname


@given(url=odd_urls | st.text(max_size=30))
def test_whatever_the_url_pattern_takes_urlsplit_takes_too(url):
    """The pattern may leave a good URL to urlsplit, never take one urlsplit would refuse."""
    taken = validate._PLAIN_URL.match(url) is not None
    try:
        parts = urlsplit(url)
        good = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        good = False
    assert good or not taken


@given(doc=messy_shot_list_documents() | shot_list_documents())
def test_the_shortcuts_find_what_the_generic_checks_find(doc):
    """Same problems in the same order, same warnings, same normalized document."""
    fast = validated(doc)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validate, "_PLAIN_URL", re.compile(r"(?!)"))  # matches nothing
        patch.setattr(validate, "_key_set", lambda _known: frozenset())  # walk every key
        patch.setattr(validate._Report, "model_keys", _model_keys_every_time)
        generic = validated(doc)
    assert fast == generic


def board(*shots: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "storyboard": {"name": "b"}, "shots": list(shots)}


def test_an_image_is_measured_once_and_each_shot_using_it_is_warned():
    measured: list[str] = []

    def measure(path: Path) -> ImageMeasures:
        measured.append(path.name)
        return fake_measure(path)

    shots = [{"id": f"s{n}", "prompt": "p", "image": "wide.png"} for n in range(3)]
    result = validate_document(
        board(*shots), base_dir=Path("b"), check_image=fake_check, measure_image=measure
    )
    assert measured == ["wide.png"]
    assert [w.path for w in result.warnings] == [
        'shots[0] (id "s0").image',
        'shots[1] (id "s1").image',
        'shots[2] (id "s2").image',
    ]


def test_a_model_changed_between_two_passes_is_held_to_its_new_keys(monkeypatch):
    """Key rules are worked out once per pass, never kept from an earlier pass."""
    doc = board({"id": "a", "prompt": "p", "image": "ok.png", "negative_prompt": "blur"})
    model = catalogue.V26_STD_I2V.model_id
    doc["storyboard"]["model"] = model
    assert validated(doc).problems == ()  # type: ignore[union-attr]
    monkeypatch.setitem(catalogue.CATALOGUE, model, attrs.evolve(catalogue.V26_STD_I2V, fields=()))
    problems = validated(doc).problems  # type: ignore[union-attr]
    assert [p.path for p in problems] == ['shots[0] (id "a").negative_prompt']


def test_a_url_urlsplit_cannot_read_is_a_problem_of_its_shot():
    found = validated(board({"id": "a", "prompt": "p", "image": "https://[oops/a.png"}))
    assert [str(p) for p in found.problems] == [  # type: ignore[union-attr]
        'shots[0] (id "a").image: "https://[oops/a.png" is not a valid URL (Invalid IPv6 URL)'
    ]
