"""Bad input of every kind: a clear error every time, never a traceback, nothing submitted.

Generated shot lists (valid ones with one thing broken), raw bytes, oversized files, images
that are not images whatever their names, folders and devices given as images, huge prompts
and unicode edge cases. The library must raise `ShotListError` with a message per problem
before any backend call and before writing any record; the command must exit 2 and print one
line per problem.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import tempfile
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipe._running.run import render
from kling_pipe._shotlist.validate import PLACEHOLDER
from kling_pipe.exceptions import ShotListError
from mockserver import MockConfig, ThreadedMockServer
from tests.cli_support import SPECS, kp

KEY = "bad-input-test-key"
GOOD_FRAME = SPECS / "frames" / "puddle.png"


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + b"\x80" * 3 * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_folder(root: Path) -> Path:
    """A shot-list folder holding one good frame and every kind of bad one."""
    frames = root / "frames"
    frames.mkdir(parents=True)
    shutil.copy(GOOD_FRAME, frames / "good.png")
    (frames / "notes.png").write_text("not an image, whatever its name says\n")
    (frames / "video.jpg").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    (frames / "empty.webp").write_bytes(b"")
    (frames / "folder.png").mkdir()
    return root


class RecordingBackend:
    """A backend that records any call: an invalid shot list must make none."""

    base_url = "http://127.0.0.1:9"
    origin = base_url

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def upload_image(self, path: Path) -> str:  # noqa: ARG002
        self.calls.append("upload")
        raise AssertionError("upload on an invalid shot list")

    async def submit(self, request: Any) -> Any:  # noqa: ARG002
        self.calls.append("submit")
        raise AssertionError("submit on an invalid shot list")

    async def get_prediction(self, task_id: str) -> Any:  # noqa: ARG002
        self.calls.append("get")
        raise AssertionError("poll on an invalid shot list")

    async def list_predictions(self, **_: Any) -> Any:
        self.calls.append("history")
        raise AssertionError("history on an invalid shot list")

    async def download(self, url: str, dest: Path) -> Any:  # noqa: ARG002
        self.calls.append("download")
        raise AssertionError("download on an invalid shot list")


def assert_refused(path: Path) -> ShotListError:
    """Render *path*: a ShotListError naming the file, no backend call, no record written."""
    backend = RecordingBackend()
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(ShotListError) as caught:
        asyncio.run(render(path, backend=backend))
    error = caught.value
    assert backend.calls == []
    assert error.problems
    for line in error.lines():
        assert line.startswith(f"{path}: ")
        assert "Traceback" not in line
        assert len(line) > len(f"{path}: ") + 5
    assert sorted(p.name for p in path.parent.iterdir()) == before, "something was written"
    return error


# ------------------------------------------------------------------------- TOML writing


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(value)


def to_toml(document: dict[str, Any]) -> str:
    lines = []
    for key, value in document.items():
        if not isinstance(value, dict | list):
            lines.append(f"{toml_string(key)} = {toml_value(value)}")
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
    for table in document.get("shots", []):
        lines.append("[[shots]]")
        lines.extend(f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- strategies

#: Text without surrogates (which no UTF-8 file can hold).
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
#: A prompt a user may write: not blank, and not init's placeholder (an error on purpose).
prompts = any_text.filter(lambda s: s.strip() != "" and not s.lstrip().startswith(PLACEHOLDER))


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    shot_ids = draw(st.lists(ids, min_size=2, max_size=5, unique=True))
    shots = []
    for i, sid in enumerate(shot_ids):
        images = [st.just("frames/good.png"), st.just(f"https://frames.example/{sid}.png")]
        if i:
            images.append(
                st.fixed_dictionaries(
                    {
                        "shot": st.sampled_from(shot_ids[:i]),
                        "frame": st.sampled_from(["first", "last"]),
                    }
                )
            )
        table: dict[str, Any] = {
            "id": sid,
            "prompt": draw(prompts),
            "image": draw(st.one_of(images)),
        }
        if draw(st.booleans()):
            table["last_image"] = "frames/good.png"
            table["duration"] = draw(st.integers(3, 10))
        else:
            table["duration"] = draw(st.sampled_from([5, 10]))
        shots.append(table)
    return {"version": 1, "storyboard": {"name": draw(ids)}, "shots": shots}


#: Files that are no image at all. A whole image under 300 px or over 10 MB is not here: for
#: O1 Standard, whose page states no image limit, it is a warning (tests/test_validate.py).
BAD_IMAGES = [
    "frames/notes.png",  # text named like an image
    "frames/video.jpg",  # an MP4 named like a JPEG
    "frames/empty.webp",
    "frames/folder.png",  # a folder
    "frames",  # a folder
    "frames/missing.png",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "",
    "ftp://frames.example/x.png",
]
BAD_IDS = [
    "",
    "UPPER",
    "a" * 65,
    "\u0455hot",  # a Cyrillic "s"
    "shot one",
    "shot\u200b",
    "café",
    "../x",
    "a/b",
    "😀",
]


def _set(field: str, value: Any):
    def apply(doc: dict[str, Any], i: int) -> None:
        doc["shots"][i][field] = value

    return apply


def _drop(field: str):
    def apply(doc: dict[str, Any], i: int) -> None:
        doc["shots"][i].pop(field, None)

    return apply


def _duration_7_without_last_image(doc: dict[str, Any], i: int) -> None:
    doc["shots"][i].pop("last_image", None)
    doc["shots"][i]["duration"] = 7


def _duplicate_id(doc: dict[str, Any], i: int) -> None:
    doc["shots"][(i + 1) % len(doc["shots"])]["id"] = doc["shots"][i]["id"]


def _chain_to_self(doc: dict[str, Any], i: int) -> None:
    doc["shots"][i]["image"] = {"shot": doc["shots"][i]["id"], "frame": "last"}


def _storyboard(field: str, value: Any):
    def apply(doc: dict[str, Any], _: int) -> None:
        doc["storyboard"][field] = value

    return apply


MUTATIONS = st.one_of(
    st.sampled_from(BAD_IMAGES).map(lambda v: _set("image", v)),
    st.sampled_from(BAD_IMAGES).map(lambda v: _set("last_image", v)),
    st.sampled_from(BAD_IDS).map(lambda v: _set("id", v)),
    st.sampled_from([0, 2, 11, -5, 2**40, True, Decimal("5.0"), "5"]).map(
        lambda v: _set("duration", v)
    ),
    st.integers(2_501, 200_000).map(lambda n: _set("prompt", "x" * n)),
    st.sampled_from(["", "   ", "\t\n", 42]).map(lambda v: _set("prompt", v)),
    st.just(_drop("prompt")),
    st.just(_drop("image")),
    st.just(_drop("id")),
    st.just(_duration_7_without_last_image),
    st.just(_duplicate_id),
    st.just(_chain_to_self),
    st.sampled_from(["nope", "ghost-shot"]).map(
        lambda s: _set("image", {"shot": s, "frame": "last"})
    ),
    st.just(_set("image", {"shot": "x", "frame": "middle"})),
    st.just(_set("durration", 5)),
    st.sampled_from(["", "..", ".", "a/b", "a\\b"]).map(lambda v: _storyboard("name", v)),
    st.sampled_from([0, -1, "four"]).map(lambda v: _storyboard("concurrency", v)),
    st.just(_storyboard("max_cost", Decimal(-1))),
    st.just(_storyboard("model", "kwaivgi/kling-v9")),
)


@pytest.fixture(scope="module")
def workspace():
    with tempfile.TemporaryDirectory() as tmp:
        yield make_folder(Path(tmp))


def fresh_board(workspace: Path, text: bytes | str) -> Path:
    folder = Path(tempfile.mkdtemp(dir=workspace))
    (folder / "frames").symlink_to(workspace / "frames")
    path = folder / "board.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=valid_documents(), mutation=MUTATIONS, where=st.integers(0, 4))
def test_a_generated_shot_list_with_one_thing_wrong_is_refused_before_anything(
    workspace, document, mutation, where
):
    mutation(document, where % len(document["shots"]))
    assert_refused(fresh_board(workspace, to_toml(document)))


@settings(max_examples=15, deadline=None)
@given(document=valid_documents())
def test_the_generated_shot_lists_are_valid_before_they_are_broken(workspace, document):
    """The mutations above are what makes the lists invalid, not the generator."""
    path = fresh_board(workspace, to_toml(document))
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    assert len(load(path).shots) == len(document["shots"])


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=2_000))
def test_raw_bytes_are_refused_with_a_clear_error_and_nothing_submitted(workspace, data):
    assert_refused(fresh_board(workspace, data))


@settings(max_examples=40, deadline=None)
@given(
    text=any_text, junk=st.sampled_from(["[[shots]", "= 1", "[storyboard]\n[storyboard]", "\x00"])
)
def test_broken_toml_is_refused_with_its_line_and_column(workspace, text, junk):
    path = fresh_board(workspace, f"version = 1\n# {text!r}\n{junk}\n")
    error = assert_refused(path)
    assert any("line" in p.path or "TOML" in p.message for p in error.problems)


UNICODE_PROMPTS = [
    "A boat 🚣 drifts on the canal at dusk",
    "مشهد ليلي فوق البحر",  # right to left
    "e\u0301cole, cafe\u0301",  # combining accents
    "\u202eeurt si siht\u202c",  # a right-to-left override
    "Zero\u200bwidth\u200djoiner",
    "全景\uff1a灯塔与海浪",  # with a full-width colon
]


@pytest.mark.parametrize("prompt", UNICODE_PROMPTS)
def test_unicode_prompts_are_accepted_as_written(workspace, prompt):
    document = {
        "storyboard": {"name": "unicode"},
        "shots": [{"id": "one", "prompt": prompt, "image": "frames/good.png"}],
    }
    from kling_pipe._shotlist.loader import load  # noqa: PLC0415

    loaded = load(fresh_board(workspace, to_toml(document)))
    assert loaded.shots[0].prompt == prompt


@pytest.mark.parametrize(
    "data",
    [
        "\ufeff".encode() + b'version = 1\n[storyboard]\nname = "x"\n',  # a UTF-8 BOM
        'version = 1\n[storyboard]\nname = "x"\n'.encode("utf-16"),
        'version = 1\n[storyboard]\nname = "caf\xe9"\n'.encode("latin-1"),
        b'[storyboard]\nname = "x"\n[[shots]]\nid = "a"\nprompt = "\xed\xa0\x80"\n',  # surrogate
    ],
    ids=["bom", "utf16", "latin1", "encoded-surrogate"],
)
def test_files_in_other_encodings_are_refused_clearly(workspace, data):
    assert_refused(fresh_board(workspace, data))


def test_a_shot_list_over_16_mb_is_refused_without_being_parsed(workspace):
    padding = b"# " + b"x" * 1022 + b"\n"
    error = assert_refused(fresh_board(workspace, padding * (17 * 1024)))
    assert "larger than 16 MB" in str(error)


# ------------------------------------------------------------------------- the command


def one_shot(image: str = "frames/good.png", *, prompt: str = "p", shot_id: str = "a") -> str:
    return (
        f'[storyboard]\nname = "x"\n[[shots]]\nid = "{shot_id}"\nprompt = "{prompt}"\n'
        f'image = "{image}"\n'
    )


CLI_CASES = {
    "huge-prompt": one_shot(prompt="x" * 100_000),
    "folder-as-image": one_shot("frames"),
    "device-as-image": one_shot("/dev/zero"),
    "text-named-png": one_shot("frames/notes.png"),
    "not-utf8": b'[storyboard]\nname = "\xff\xfe"\n',
    "lookalike-id": one_shot(shot_id="\u0455hot"),  # a Cyrillic "s"
}


@pytest.fixture(scope="module")
def mock():
    with ThreadedMockServer(MockConfig(api_key=KEY)) as server:
        yield server


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_the_command_exits_2_with_one_line_per_problem_and_sends_nothing(workspace, mock, case):
    data = CLI_CASES[case]
    path = fresh_board(workspace, data)
    done = kp(
        "run", path, "--backend", "wavespeed", "--yes", "--base-url", mock.base_url,
        env={"WAVESPEED_API_KEY": KEY},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert done.stderr.startswith(f"{path}: "), done.stderr
    assert mock.journal() == []
    assert not (path.parent / "board.toml.kling-state").exists()


def test_validate_json_reports_bad_input_as_data_without_a_traceback(workspace):
    path = fresh_board(workspace, CLI_CASES["device-as-image"])
    done = kp("validate", "--json", path)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert "/dev/zero" in json.dumps(json.loads(done.stdout))
