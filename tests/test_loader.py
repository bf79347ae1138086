"""Reading shot-list files: TOML errors, bytes, round trips, and nothing but our own error."""

from __future__ import annotations

import contextlib
import gc
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import tomli
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import ShotListError, load, load_bytes, loads, structure, unstructure
from kling_pipe._shotlist import loader
from kling_pipe._shotlist.specs import Defaults, ImageRef, PromptPart, Shot, ShotList, Storyboard
from kling_pipe._shotlist.validate import Validated, validate_document
from tests.strategies import (
    model_shot_list_documents,
    shot_list_documents,
    to_toml,
    toml_values,
)


def test_a_toml_syntax_error_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('version = 1\n[storyboard]\nname = "x\n')
    with pytest.raises(ShotListError) as info:
        load(path)
    assert info.value.lines() == [
        f"{path}: line 3, column 10: invalid TOML: Illegal character '\\n'"
    ]


def test_a_missing_file_is_reported_not_raised_as_oserror(tmp_path):
    with pytest.raises(ShotListError) as info:
        load(tmp_path / "nope.toml")
    assert info.value.lines() == [f"{tmp_path / 'nope.toml'}: file not found"]


def test_a_folder_is_not_a_shot_list(tmp_path):
    with pytest.raises(ShotListError) as info:
        load(tmp_path)
    assert info.value.lines() == [f"{tmp_path}: is a folder, not a shot list"]


def test_non_utf8_bytes_are_reported_with_their_line():
    with pytest.raises(ShotListError) as info:
        load_bytes(b'version = 1\nname = "\xff"\n', source="x.toml")
    assert info.value.lines() == ["x.toml: line 2: not UTF-8 text (byte 0xff); save it as UTF-8"]


URL_BOARD = 'version = 1\n[storyboard]\nname = "n"\n[[shots]]\nid = "a"\nprompt = "p"\n'
URL_BOARD += 'image = "https://x.test/a.png"\n'


def test_a_utf8_byte_order_mark_at_the_start_is_accepted(tmp_path):
    """Notepad saves UTF-8 with a BOM: the file loads as if it were not there."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + URL_BOARD.encode())
    assert load(path) == loads(URL_BOARD)
    assert load_bytes(b"\xef\xbb\xbf" + URL_BOARD.encode()) == loads(URL_BOARD)
    assert loads("\ufeff" + URL_BOARD) == loads(URL_BOARD)


def test_a_byte_order_mark_anywhere_but_the_start_is_still_invalid_toml():
    with pytest.raises(ShotListError) as info:
        loads(URL_BOARD.replace("[storyboard]", "\ufeff[storyboard]"), source="x.toml")
    assert info.value.lines()[0].startswith("x.toml: line 2, column 1: invalid TOML")


def test_local_paths_resolve_against_the_shot_list_folder(tmp_path, frames):
    text = 'version = 1\n[storyboard]\nname = "n"\n[[shots]]\nid = "a"\nprompt = "p"\n'
    text += 'image = "frames/puddle.png"\n'
    shotlist = loads(text, source=tmp_path / "board.toml")
    assert shotlist.resolve(shotlist.shots[0].image) == frames / "puddle.png"  # type: ignore[arg-type]
    assert shotlist.output_path == tmp_path / "renders/n"


@given(doc=shot_list_documents())
def test_structure_then_unstructure_round_trips(doc):
    """A valid document survives structure -> unstructure -> structure unchanged."""
    first = structure(doc, check_image=None)
    again = structure(unstructure(first), check_image=None)
    assert again == first


@given(doc=shot_list_documents())
def test_valid_documents_written_as_toml_load_equal(doc):
    assert loads(to_toml(doc), check_image=None) == structure(doc, check_image=None)


@given(doc=st.dictionaries(st.text(max_size=12), toml_values, max_size=6))
def test_arbitrary_documents_raise_only_shot_list_error(doc):
    try:
        structure(doc, check_image=None)
    except ShotListError as error:
        assert error.problems
    # A valid result is fine too; any other exception fails the test.


@given(
    doc=shot_list_documents(),
    key=st.sampled_from(["storyboard", "shots", "defaults"]),
    junk=toml_values,
)
def test_a_valid_document_with_one_part_replaced_raises_only_shot_list_error(doc, key, junk):
    doc[key] = junk
    try:
        structure(doc, check_image=None)
    except ShotListError as error:
        assert error.problems


@given(text=st.text(max_size=300))
def test_arbitrary_text_raises_only_shot_list_error(text):
    try:
        loads(text, check_image=None)
    except ShotListError as error:
        assert error.problems


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_shot_list_error(data, tmp_path_factory):
    try:
        load_bytes(data, source=Path("x.toml"))
    except ShotListError as error:
        assert error.problems


BOARD = """version = 1
[storyboard]
name = "x"
[[shots]]
id = "a"
prompt = "p"
image = "{image}"
"""


def test_a_records_only_load_takes_a_missing_image_and_still_checks_one_that_is_there(tmp_path):
    missing = tmp_path / "gone.toml"
    missing.write_text(BOARD.format(image="frames/gone.png"), encoding="utf-8")
    with pytest.raises(ShotListError, match="file not found"):
        load(missing)
    assert load(missing, records_only=True).shots[0].id == "a"
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = tmp_path / "bad.toml"
    bad.write_text(BOARD.format(image="bad.png"), encoding="utf-8")
    with pytest.raises(ShotListError, match="is not a PNG, JPEG or WebP image"):
        load(bad, records_only=True)


def test_a_symlinked_shot_list_is_the_file_it_leads_to(tmp_path, frames):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "film.toml"
    real.write_text(BOARD.format(image=f"{frames}/puddle.png"), encoding="utf-8")
    link = tmp_path / "current.toml"
    link.symlink_to(real)
    assert load(link).source == real
    assert load(link).base_dir == real.parent


@pytest.mark.parametrize("text", ['version = 1\n[storyboard]\nname = "t"\n', "x ="])
def test_the_cycle_collector_runs_again_once_a_shot_list_is_read(text):
    """Paused while a document's values are built, whatever the outcome; left off if it was."""
    was = gc.isenabled()
    try:
        gc.enable()
        with contextlib.suppress(ShotListError):
            loads(text)
        assert gc.isenabled()
        gc.disable()
        with contextlib.suppress(ShotListError):
            loads(text)
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def parsed(parser: Any, text: str) -> str:
    """What *parser* makes of *text*: its values' repr (Decimal exponents shown), or its error."""
    try:
        return repr(parser.loads(text, parse_float=Decimal))
    except parser.TOMLDecodeError as exc:
        return f"error: {exc}"


@given(doc=st.dictionaries(st.text(max_size=10), toml_values, max_size=5))
def test_a_document_reads_as_the_standard_librarys_tomllib_reads_it(doc):
    """tomli (compiled) replaced tomllib: the same values, or the same error."""
    text = to_toml(doc)
    assert parsed(tomli, text) == parsed(tomllib, text)


@pytest.mark.parametrize(
    "text",
    [
        'name = "x\n',
        "a = ",
        "a = 1\na = 2",
        "[a]\n[a]",
        'x = "\\q"',
        "x = 1.2.3",
        "x = 1979-05-27T",
        "\ufeffx=1",
        "x = [[1]",
        "x == 1",
        'x = "a\x7f"',
        'x = "\\ud800"',
    ],
)
def test_invalid_toml_is_told_as_the_standard_librarys_tomllib_tells_it(text):
    """Each message the loader turns into a problem (line and column included)."""
    assert parsed(tomli, text).startswith("error: ")
    assert parsed(tomli, text) == parsed(tomllib, text)


def test_toml_1_1_is_read_too(tmp_path):
    """tomli reads TOML 1.1, whose additions (here an inline table over lines) 1.0 refused."""
    text = (
        'version = 1\n[storyboard]\nname = "t"\n[[shots]]\nid = "a"\nprompt = "p"\n'
        'image = "https://x.example/a.png"\nlast_image = {\n  shot = "a",\n  frame = "last",\n}\n'
    )
    with pytest.raises(ShotListError) as info:
        loads(text, source=tmp_path / "t.toml")
    assert [p.message for p in info.value.problems] == ["a shot cannot chain from its own video"]


@given(doc=shot_list_documents() | model_shot_list_documents())
def test_the_specs_are_built_as_the_converter_builds_them(doc):
    """One pass builds what cattrs' converter builds from the same normalized document."""
    validated = validate_document(doc, base_dir=Path("b"), check_image=None)
    assert validated.problems == ()
    built = loader._specs(validated.document)
    assert built == loader.converter().structure(validated.document, ShotList)
    assert repr(built) == repr(loader.converter().structure(validated.document, ShotList))


def test_every_spec_field_is_one_the_one_pass_builds():
    """A field of a type `_specs` does not know (a nested table) would pass through as a dict."""
    plain = [str, int, bool, str | None, int | None, bool | None]
    built = [
        (ImageRef | None, loader._IMAGE_FIELDS),
        (Decimal | None, loader._DECIMAL_FIELDS),
        (tuple[PromptPart, ...] | None, ("multi_prompt",)),
    ]
    for spec in (Storyboard, Defaults, Shot):
        for field in attrs.fields(attrs.resolve_types(spec)):
            known = [names for kind, names in built if field.type == kind]
            assert field.type in plain or field.name in known[0], (spec, field)


def test_a_document_the_one_pass_cannot_build_is_told_by_the_converter(monkeypatch):
    """Validation should never let one through; if it did, the problem still names the key."""
    normalized = {
        "version": 1,
        "storyboard": {"name": "b"},
        "defaults": {},
        "shots": [{"id": "a", "prompt": "p", "colour": "red"}],
    }
    monkeypatch.setattr(loader, "validate_document", lambda *_a, **_k: Validated((), normalized))
    with pytest.raises(ShotListError) as info:
        structure({})
    assert [p.path for p in info.value.problems] == ["extra fields found (colour) @ $.shots[0]"]
