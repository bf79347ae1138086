"""Fingerprints change with every input and with nothing else."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import attrs
from hypothesis import given
from hypothesis import strategies as st

from kling_pipe import loads, structure
from kling_pipe._shotlist.fingerprint import explain_change, fingerprint_inputs, fingerprints
from kling_pipe._shotlist.specs import ChainImage, LocalImage, Shot, ShotList, Storyboard, UrlImage
from tests.strategies import shot_list_documents, to_toml


def fake_hash(path: Path) -> str:
    """Content hash stand-in: the file's name stands for its bytes."""
    return hashlib.sha256(path.name.encode()).hexdigest()


def board(*shots: Shot) -> ShotList:
    return ShotList(storyboard=Storyboard(name="b"), shots=shots)


A = Shot(id="a", prompt="p", image=LocalImage(path="frames/a.png"))
B = Shot(id="b", prompt="q", image=ChainImage(shot="a", frame="last"))


@given(doc=shot_list_documents())
def test_whitespace_comments_and_key_order_change_nothing(doc):
    plain = loads(to_toml(doc), check_image=None)
    # Only the space around a key's "=": a ' = ' inside a quoted value is the user's text.
    respaced = re.sub(r'(?<!\\)" = ', '"   =   ', to_toml(doc))
    spaced = loads("# a comment\n\n" + respaced + "\n\n", check_image=None)
    assert fingerprints(plain, fake_hash) == fingerprints(spaced, fake_hash)


@given(doc=shot_list_documents(), data=st.data())
def test_reordering_shots_and_renaming_the_file_change_nothing(doc, data):
    shotlist = structure(doc, check_image=None)
    shuffled = data.draw(st.permutations(shotlist.shots))
    moved = attrs.evolve(shotlist, shots=tuple(shuffled), source=Path("renamed.toml"))
    assert fingerprints(moved, fake_hash) == fingerprints(shotlist, fake_hash)


@given(
    doc=shot_list_documents(),
    data=st.data(),
    edit=st.sampled_from(["prompt", "duration", "image", "prefix", "model_free_url"]),
)
def test_every_relevant_edit_changes_the_edited_shot(doc, data, edit):
    shotlist = structure(doc, check_image=None)
    target = data.draw(st.sampled_from(shotlist.shots))
    match edit:
        case "prompt":
            changed = attrs.evolve(target, prompt=target.prompt + " more")
        case "prefix":
            changed = attrs.evolve(target, prompt_prefix="new prefix " + target.prompt_prefix)
        case "duration":
            options = [5, 10] if target.last_image is None else list(range(3, 11))
            other = [d for d in options if d != target.duration]
            changed = attrs.evolve(target, duration=data.draw(st.sampled_from(other)))
        case _:
            changed = attrs.evolve(target, image=UrlImage(url="https://changed.example/x.png"))
    if changed == target:
        return
    edited = attrs.evolve(
        shotlist, shots=tuple(changed if s.id == target.id else s for s in shotlist.shots)
    )
    assert (
        fingerprints(edited, fake_hash)[target.id] != fingerprints(shotlist, fake_hash)[target.id]
    )


def test_a_local_image_counts_by_content_not_by_name():
    same_bytes = {"frames/a.png": "x", "elsewhere/renamed.png": "x", "frames/edited.png": "y"}
    moved = Shot(id="a", prompt="p", image=LocalImage(path="elsewhere/renamed.png"))
    edited = Shot(id="a", prompt="p", image=LocalImage(path="frames/edited.png"))

    def content(path: Path) -> str:
        return same_bytes[str(path.relative_to(Path()))]

    assert fingerprints(board(A), content) == fingerprints(board(moved), content)
    assert fingerprints(board(A), content) != fingerprints(board(edited), content)


def test_editing_a_source_changes_the_shots_chained_from_it():
    edited_a = attrs.evolve(A, prompt="changed")
    before = fingerprints(board(A, B), fake_hash)
    after = fingerprints(board(edited_a, B), fake_hash)
    assert before["b"] != after["b"]


def test_the_frame_of_a_chain_is_an_input():
    first = attrs.evolve(B, image=ChainImage(shot="a", frame="first"))
    assert (
        fingerprints(board(A, B), fake_hash)["b"] != fingerprints(board(A, first), fake_hash)["b"]
    )


def test_changes_are_explained_in_words():
    before = fingerprint_inputs(board(A, B), fake_hash)
    after = fingerprint_inputs(board(attrs.evolve(A, prompt="x", duration=10), B), fake_hash)
    assert explain_change(before["a"], after["a"]) == "prompt changed, duration changed"
    assert explain_change(before["b"], after["b"]) == "image: its source shot changed"


def test_each_image_file_is_hashed_once_however_its_path_is_written():
    hashed: list[Path] = []

    def counting_hash(path: Path) -> str:
        hashed.append(path)
        return fake_hash(path)

    shots = [
        Shot(id=f"s{n}", prompt="p", image=LocalImage(path=written))
        for n, written in enumerate(["frames/a.png", "./frames/a.png", "frames/a.png", "b.png"])
    ]
    found = fingerprints(board(*shots), counting_hash)
    assert sorted(p.name for p in hashed) == ["a.png", "b.png"]
    assert found["s0"] == found["s1"] == found["s2"] != found["s3"]
