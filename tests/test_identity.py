"""One storyboard, one set of records: through a symlink, after a rename, never two at once."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from kling_pipe._records.registry import Registry
from tests.cli_support import Running, kp

RENDER = ("-q", "--mock-processing", "0.1")


@pytest.fixture
def film(specs: Path) -> Path:
    """The chain example as ``film.toml``, rendered once on the bundled mock."""
    path = (specs / "chain.toml").rename(specs / "film.toml")
    done = kp("run", path, *RENDER)
    assert done.returncode == 0, done.stderr
    return path


def listing(folder: Path) -> list[str]:
    # Names, not times: reading the SQLite store touches its journal files.
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def statuses(path: Path, *args: str) -> set[str]:
    done = kp("status", path, "--json", *args)
    assert done.returncode == 0, done.stderr
    return {s["status"] for s in json.loads(done.stdout)["shots"]}


def test_a_symlink_finds_its_targets_records_and_pays_nothing(film):
    link = film.with_name("current.toml")
    link.symlink_to(film.name)
    assert json.loads(kp("plan", link, "--json").stdout)["total_cost"] == "0.000"
    assert statuses(link) == {"cached"}
    again = kp("run", link, "--json", "--mock-processing", "0.1")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["totals"]["spent"] == "0.000"
    assert not link.with_name("current.toml.kling-state").exists()
    assert not link.with_name("current.toml.lock.json").exists()


def test_two_runs_at_once_through_two_names_of_one_storyboard_exclude_each_other(specs):
    film = (specs / "chain.toml").rename(specs / "film.toml")
    link = film.with_name("current.toml")
    link.symlink_to(film.name)
    first = Running("run", link, "--mock-processing", "60", cwd=specs)
    try:
        assert first.wait_for("processing") is not None, first.finish().stderr
        second = kp("run", film, *RENDER)
        assert second.returncode == 2, second.stdout
        assert "another kling-pipe run (pid" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()


def test_a_renamed_storyboard_finds_its_records_says_so_and_run_moves_them(film, specs):
    movie = film.rename(film.with_name("movie.toml"))
    notice = "records of film.toml (renamed to movie.toml) found"
    before = listing(specs)
    plan = kp("plan", movie, "--json")
    assert json.loads(plan.stdout)["total_cost"] == "0.000"
    assert plan.stderr.splitlines() == [notice]
    status = kp("status", movie)
    assert notice in status.stdout.splitlines()
    assert statuses(movie) == {"cached"}
    assert listing(specs) == before  # read where they are; nothing written, nothing moved
    run = kp("run", movie, "--json", "--mock-processing", "0.1")
    assert run.returncode == 0, run.stderr
    assert notice in run.stderr.splitlines()
    assert json.loads(run.stdout)["totals"]["spent"] == "0.000"
    assert (specs / "movie.toml.kling-state" / "state.sqlite").is_file()
    assert (specs / "movie.toml.lock.json").is_file()
    assert not (specs / "film.toml.kling-state").exists()
    assert not (specs / "film.toml.lock.json").exists()
    owner = json.loads((specs / "renders" / "chain" / ".kling-pipe-owner.json").read_text())
    assert owner == {"shot_list": str(movie.resolve())}
    again = kp("status", movie)
    assert notice not in again.stdout
    assert statuses(movie) == {"cached"}


def test_the_registry_claims_follow_a_renamed_storyboard(film, private_task_registry):
    movie = film.rename(film.with_name("movie.toml"))
    assert kp("run", movie, *RENDER).returncode == 0
    with sqlite3.connect(private_task_registry) as db:
        owners = {row[0] for row in db.execute("SELECT owner FROM tasks")}
    assert owners
    assert all(owner.startswith(f"{movie.resolve()}#") for owner in owners), owners


def test_a_lock_file_moved_with_the_storyboard_and_a_state_folder_left_behind_are_one(film):
    movie = film.rename(film.with_name("movie.toml"))  # git mv of both files; the state stays
    film.with_name("film.toml.lock.json").rename(film.with_name("movie.toml.lock.json"))
    plan = kp("plan", movie, "--json")
    assert json.loads(plan.stdout)["total_cost"] == "0.000"
    assert "records of film.toml (renamed to movie.toml) found" in plan.stderr
    assert kp("run", movie, *RENDER).returncode == 0
    assert (movie.with_name("movie.toml.kling-state") / "state.sqlite").is_file()
    assert not film.with_name("film.toml.kling-state").exists()


def test_a_copy_beside_the_storyboard_is_another_storyboard_and_is_refused_naming_both(film):
    movie = film.with_name("movie.toml")
    shutil.copyfile(film, movie)
    status = kp("status", movie)
    assert "renamed" not in status.stdout + status.stderr
    assert statuses(movie) == {"pending"}
    run = kp("run", movie, *RENDER)
    assert run.returncode == 2
    assert str(film.resolve()) in run.stderr
    assert str(movie.resolve()) in run.stderr


def test_records_at_both_the_old_and_the_new_name_are_refused_naming_both(film):
    movie = film.rename(film.with_name("movie.toml"))
    shutil.copyfile(film.with_name("film.toml.lock.json"), movie.with_name("movie.toml.lock.json"))
    state = film.with_name("film.toml.kling-state")
    shutil.copytree(state, movie.with_name("movie.toml.kling-state"))
    for command in ("status", "plan", "run"):
        done = kp(command, movie)
        assert done.returncode == 2, (command, done.stdout)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "film.toml" in done.stderr
        assert "movie.toml" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_registry_gives_a_shot_lists_claims_to_its_new_name(tmp_path):
    with Registry.open(tmp_path / "tasks.sqlite") as registry:
        assert registry.claim("t1", owner="/a/film.toml#storm", origin="mock")
        assert registry.claim("t2", owner="/a/film.toml.bak#storm", origin="mock")
        assert registry.rename_owner("/a/film.toml", "/a/movie.toml") == 1
        assert registry.owner("t1") == "/a/movie.toml#storm"
        assert registry.owner("t2") == "/a/film.toml.bak#storm"
