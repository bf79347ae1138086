"""`schema`, `init`, `cut` and `report`: exit codes, one-line errors, what they print.

Run in-process on a parser that gets the commands through `add_commands`, exactly as
`cli.build_parser` adds them; the subprocess walkthrough lives in tests/e2e.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest

from kling_pipe._cli import tools as cli_tools
from kling_pipe._cli.main import build_parser, main
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.schema import shot_list_schema
from kling_pipe._shotlist.validate import PLACEHOLDER
from tests.cli_support import copy_frames
from tests.imagefiles import write_image
from tests.mp4clips import write_video


def kp(*args: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="kling-pipe")
    commands = parser.add_subparsers(dest="command", required=True)
    cli_tools.add_commands(commands)
    parsed = parser.parse_args([str(a) for a in args])
    code: int = parsed.handler(parsed)
    return code


@pytest.fixture
def demo(specs: Path) -> Path:
    """A copy of specs/ whose demo shots are all rendered (small stand-in videos)."""
    out = specs / "renders" / "paper-boat" / "mock"  # as the bundled mock renders them
    out.mkdir(parents=True)
    for shot_id, seconds in (
        ("puddle", 5),
        ("gutter", 5),
        ("street", 5),
        ("river", 7),
        ("open-sea", 10),
        ("dusk", 5),
    ):
        write_video(out / f"{shot_id}.mp4", seconds)
    return specs / "demo.toml"


def test_schema_prints_the_schema_as_json(capsys):
    assert kp("schema") == 0
    assert json.loads(capsys.readouterr().out) == shot_list_schema()


def test_init_writes_the_shot_list_and_says_what_to_do_next(tmp_path, capsys):
    keys = tmp_path / "keys"
    keys.mkdir()
    write_image(keys / "a.png")
    write_image(keys / "b.png")
    assert kp("init", keys, "--name", "lighthouse", "--bridge") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'lighthouse.toml'}: 2 shots from {keys}; ")
    assert "then: kling-pipe run" in out
    assert (tmp_path / "lighthouse.toml").exists()


def test_init_says_which_files_it_skipped_and_why_one_line_each(tmp_path, capsys):
    """A TIFF, BMP or GIF keyframe is named on stderr; the shots that could be made are."""
    keys = tmp_path / "keys"
    keys.mkdir()
    write_image(keys / "01.png")
    write_image(keys / "02.tif", "tiff")
    write_image(keys / "03.gif", "gif")
    assert kp("init", keys, "--name", "teaser") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{tmp_path / 'teaser.toml'}: 1 shot from {keys}; ")
    convert = "WaveSpeed takes PNG, JPEG or WebP (convert it to use it)"
    assert captured.err.splitlines() == [
        f"{keys / '02.tif'}: skipped: a TIFF image; {convert}",
        f"{keys / '03.gif'}: skipped: a GIF image; {convert}",
    ]


def test_init_of_a_folder_of_only_skipped_files_names_them_and_exits_2(tmp_path, capsys):
    keys = tmp_path / "keys"
    keys.mkdir()
    write_image(keys / "01.bmp", "bmp")
    assert kp("init", keys, "--name", "teaser") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{keys / '01.bmp'}: skipped: a BMP image; WaveSpeed takes PNG, JPEG or WebP "
        "(convert it to use it)",
        f"{keys}: no PNG, JPEG or WebP images here (checked by content)",
    ]
    assert not (tmp_path / "teaser.toml").exists()


def test_init_over_an_existing_file_is_one_line_and_exit_2(tmp_path, capsys):
    keys = tmp_path / "keys"
    keys.mkdir()
    write_image(keys / "a.png")
    (tmp_path / "board.toml").write_text("# mine\n")
    assert kp("init", keys, "--name", "x", "-o", tmp_path / "board.toml") == 2
    err = capsys.readouterr().err
    assert err == (
        f"kling-pipe: {tmp_path / 'board.toml'}: already exists; "
        "choose another file with -o, or move it away\n"
    )


def test_init_of_a_folder_with_no_images_is_one_line_and_exit_2(tmp_path, capsys):
    assert kp("init", tmp_path, "--name", "x") == 2
    assert capsys.readouterr().err == (
        f"{tmp_path}: no PNG, JPEG or WebP images here (checked by content)\n"
    )


def test_cut_joins_the_demo_and_says_how(demo, tmp_path, capsys):
    assert kp("cut", demo, "-o", tmp_path / "film.mp4") == 0
    assert capsys.readouterr().out == f"{tmp_path / 'film.mp4'}: 6 shots, 37.0 s (packets copied)\n"


def test_cut_with_missing_shots_names_them_and_exits_2(demo, tmp_path, capsys):
    (demo.parent / "renders" / "paper-boat" / "mock" / "river.mp4").unlink()
    assert kp("cut", demo, "-o", tmp_path / "film.mp4") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("kling-pipe: 1 shot not rendered by the bundled mock in ")
    assert err.endswith(': "river"; render them first, or join the rest with --partial\n')


def test_cut_partial_leaves_missing_shots_out_and_says_which(demo, tmp_path, capsys):
    (demo.parent / "renders" / "paper-boat" / "mock" / "river.mp4").unlink()
    assert kp("cut", demo, "-o", tmp_path / "film.mp4", "--partial") == 0
    captured = capsys.readouterr()
    assert "5 shots, 30.0 s" in captured.out
    assert captured.err == f'{demo}: left out, not rendered: "river"\n'


def test_report_writes_the_sheet_and_prints_its_path(demo, capsys):
    assert kp("report", demo) == 0
    page = demo.parent / "renders" / "paper-boat" / "mock" / "index.html"
    assert capsys.readouterr().out == f"{page}\n"
    html = page.read_text(encoding="utf-8")
    money = "3.108 USD simulated (bundled mock: nothing charged)"
    assert all(f">{part}<" in html for part in ("6 shots", "37 s", money))
    assert html.count("<video ") == 6
    assert html.count("USD simulated</dd>") == 6  # every card's cost, not the total alone
    assert "spent" not in html


def test_an_invalid_shot_list_prints_every_problem_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[storyboard]\nname = "b"\n[[shots]]\nid = "A"\nprompt = "p"\nimage = "x"\n')
    for command in (("report", bad), ("cut", bad, "-o", tmp_path / "f.mp4")):
        assert kp(*command) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f'{bad}: shots[0] (id "A").id: ')
        assert all(line.startswith(f"{bad}: ") for line in err)
        assert "Traceback" not in "\n".join(err)


def test_a_missing_shot_list_is_one_line_and_exit_2(tmp_path, capsys):
    assert kp("report", tmp_path / "nope.toml") == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope.toml'}: file not found\n"


def test_every_command_has_help_with_examples():
    parser = argparse.ArgumentParser(prog="kling-pipe")
    commands = parser.add_subparsers(dest="command")
    cli_tools.add_commands(commands)
    for name in ("schema", "init", "cut", "report"):
        text = commands.choices[name].format_help()
        assert "examples:\n  kling-pipe " + name in text


def help_examples() -> list[list[str]]:
    """Every example command in every command's help, split into words (comments cut)."""
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [parser.epilog or ""] + [sub.epilog or "" for sub in commands.choices.values()]
    found = []
    for epilog in lines:
        for line in epilog.splitlines():
            words = shlex.split(line.split("#", 1)[0])
            while words and "=" in words[0]:  # WAVESPEED_API_KEY=... kling-pipe ...
                words.pop(0)
            if words[:1] == ["kling-pipe"]:
                found.append(words)
    return found


def test_every_help_example_names_files_and_shots_that_exist(specs):
    """`--rerender storm` named a shot of no example: each one must work as it stands."""
    examples = help_examples()
    assert len(examples) > 20
    ids = {path.name: {s.id for s in load(path).shots} for path in specs.glob("*.toml")}
    for words in examples:
        boards = [w.removeprefix("specs/") for w in words if w.startswith("specs/")]
        for board in boards:
            assert "*" in board or (specs / board).exists(), words
        if "--rerender" in words:
            assert words[words.index("--rerender") + 1] in ids[boards[0]], words
        if words[1] == "pick":
            assert words[3] in ids[boards[0]], words
        if words[1] == "init":
            assert (specs / words[2].removeprefix("specs/")).is_dir(), words


def test_init_and_validate_say_what_the_walkthrough_says(tmp_path, capsys):
    """init's file fails validate on its placeholder prompts alone; replaced, it validates."""
    frames = copy_frames(tmp_path / "frames")
    assert kp("init", frames, "--name", "lighthouse") == 0
    board = tmp_path / "lighthouse.toml"
    capsys.readouterr()
    assert main(["validate", str(board)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == len(list(frames.iterdir()))
    assert all(
        line.endswith(
            "prompt: still the placeholder written by kling-pipe init; describe what "
            "happens in the shot"
        )
        for line in errors
    ), errors
    board.write_text(
        re.sub(rf'"{re.escape(PLACEHOLDER)}[^"]*"', '"a paper boat"', board.read_text())
    )
    assert main(["validate", str(board)]) == 0
