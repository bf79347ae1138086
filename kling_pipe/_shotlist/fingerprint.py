"""Shot fingerprints: one stable hash of everything that determines a shot's video.

Two shots with the same fingerprint would be sent the same request, so a fingerprint already
rendered is never paid for again. It covers the model, the final prompt, the duration and each
frame *by content*: a local file's sha256 (so renaming or moving it changes nothing, editing
it does), a URL as written, and for a chain the source shot's fingerprint and the frame (so an
edit to a source re-renders the shots chained from it). What the file looks like — comments,
whitespace, the order of shots, the file's name — is not an input and changes nothing.

Takes: take 1 of a shot has the shot's fingerprint, unchanged, so a shot of one take (the
default) is recorded exactly as before takes existed, and raising `takes` from 1 to 2 renders
take 2 only. Take k ≥ 2 has `take_fingerprint(shot's, k)`: the shot's fingerprint plus the
take number. A chain uses the *picked* take of its source: its frame input is that take's
fingerprint (and the take number, when it is not 1), so picking another take of a source makes
the shots chained from it stale, and picking take 1 again brings their old fingerprint back.

A pick is honoured only while it still names the video it was made on: its take exists
(``takes`` was not lowered below it) and that take's fingerprint is the one recorded with the
pick. An edited shot is a new draw, so its pick falls back to take 1 until the user picks again.

Pure: file hashing is passed in as a function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from kling_pipe._shotlist.chains import chain_order
from kling_pipe._shotlist.specs import (
    ChainImage,
    ImageRef,
    LocalImage,
    Shot,
    ShotList,
    UrlImage,
    unit_key,
)

#: Bumped when the fingerprint's recipe changes, so old records stop matching.
RECIPE = 1

HashFile = Callable[[Path], str]

#: A pick as recorded: the take, and the fingerprint of that take when it was picked (None
#: for a pick made just now, on the current fingerprints).
RecordedPick = tuple[int, "str | None"]


def take_fingerprint(shot_fingerprint: str, take: int) -> str:
    """Return take *take*'s fingerprint: the shot's for take 1, else the shot's plus *take*."""
    if take == 1:
        return shot_fingerprint
    return digest({"recipe": RECIPE, "take_of": shot_fingerprint, "take": take})


def take_inputs(inputs: Mapping[str, Any], take: int) -> dict[str, Any]:
    """Return take *take*'s inputs (kept with its records): the shot's, plus the take number."""
    return dict(inputs) if take == 1 else {**inputs, "take": take}


def shot_inputs(
    shot: Shot,
    model: str,
    *,
    image_hash: Callable[[LocalImage], str],
    chain_fp: Mapping[str, str],
    picks: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Return the inputs a fingerprint covers, as plain data (also kept to explain staleness).

    *chain_fp* holds each source shot's fingerprint; *picks* the take in force for a source
    (take 1 when it has none): a chain's frame comes from that take's video.
    """
    in_force = picks or {}

    def frame(image: ImageRef | None) -> dict[str, Any] | None:
        match image:
            case None:
                return None
            case LocalImage():
                return {"sha256": image_hash(image)}
            case UrlImage(url=url):
                return {"url": url}
            case ChainImage(shot=source, frame=which):
                take = in_force.get(source, 1)
                chained: dict[str, Any] = {
                    "shot": take_fingerprint(chain_fp[source], take),
                    "frame": which,
                }
                if take != 1:
                    chained["take"] = take
                return chained

    return {
        "recipe": RECIPE,
        "model": model,
        "prompt": shot.final_prompt,
        "duration": shot.duration,
        "image": frame(shot.image),
        "last_image": frame(shot.last_image),
    }


def digest(inputs: Mapping[str, Any]) -> str:
    """Hash fingerprint inputs canonically (sorted keys, no whitespace, UTF-8)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen(kw_only=True)
class Fingerprinted:
    """Every render unit's fingerprint and inputs, and the pick in force for every shot."""

    #: By unit key (a shot's id is the key of its take 1): what each take's fingerprint covers.
    inputs: dict[str, dict[str, Any]]
    #: By unit key.
    fingerprints: dict[str, str]
    #: By shot id: the take whose video is the shot's (1 unless a pick is in force).
    picks: dict[str, int]

    def picked_key(self, shot_id: str) -> str:
        """Return the unit key of the shot's picked take."""
        return unit_key(shot_id, self.picks.get(shot_id, 1))


def fingerprint_units(
    shotlist: ShotList, hash_file: HashFile, picks: Mapping[str, RecordedPick] | None = None
) -> Fingerprinted:
    """Fingerprint every take of every shot, sources before the shots chained from them.

    *picks* are the picks recorded (by shot id); each is honoured only while it is valid (see
    the module docstring), in chain order, since a source's pick changes the fingerprints of
    the shots chained from it and so whether their own picks still hold.
    """
    cache: dict[Path, str] = {}
    recorded = picks or {}

    def image_hash(image: LocalImage) -> str:
        path = shotlist.resolve(image)
        if path not in cache:
            cache[path] = hash_file(path)
        return cache[path]

    shot_fps: dict[str, str] = {}
    in_force: dict[str, int] = {}
    inputs: dict[str, dict[str, Any]] = {}
    fps: dict[str, str] = {}
    for shot in chain_order(shotlist.shots):
        base = shot_inputs(
            shot,
            shotlist.storyboard.model,
            image_hash=image_hash,
            chain_fp=shot_fps,
            picks=in_force,
        )
        shot_fps[shot.id] = digest(base)
        for take in range(1, shot.takes + 1):
            key = unit_key(shot.id, take)
            inputs[key] = take_inputs(base, take)
            fps[key] = take_fingerprint(shot_fps[shot.id], take)
        take, made_on = recorded.get(shot.id, (1, None))
        valid = 1 <= take <= shot.takes and made_on in (None, fps[unit_key(shot.id, take)])
        in_force[shot.id] = take if valid else 1
    return Fingerprinted(inputs=inputs, fingerprints=fps, picks=in_force)


def fingerprint_inputs(
    shotlist: ShotList, hash_file: HashFile, picks: Mapping[str, RecordedPick] | None = None
) -> dict[str, dict[str, Any]]:
    """Return every shot's fingerprint inputs (its take 1's), by shot id."""
    units = fingerprint_units(shotlist, hash_file, picks)
    return {s.id: units.inputs[s.id] for s in chain_order(shotlist.shots)}


def fingerprints(
    shotlist: ShotList, hash_file: HashFile, picks: Mapping[str, RecordedPick] | None = None
) -> dict[str, str]:
    """Return every shot's fingerprint (its take 1's), by shot id."""
    units = fingerprint_units(shotlist, hash_file, picks)
    return {s.id: units.fingerprints[s.id] for s in chain_order(shotlist.shots)}


def explain_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Say in a few words why a shot's fingerprint changed, from its old and new inputs."""
    changed = [
        key
        for key in ("model", "prompt", "duration", "image", "last_image")
        if old.get(key) != new.get(key)
    ]
    if not changed:
        return "the fingerprint recipe changed"
    reasons = []
    for key in changed:
        before, after = old.get(key), new.get(key)
        if key in ("image", "last_image") and isinstance(before, dict) and isinstance(after, dict):
            if "shot" in before and "shot" in after and before.get("frame") == after.get("frame"):
                if before.get("take", 1) != after.get("take", 1):
                    reasons.append(f"{key}: take {after.get('take', 1)} of its source was picked")
                else:
                    reasons.append(f"{key}: its source shot changed")
                continue
            reasons.append(f"{key} changed")
        elif before is None or after is None:
            reasons.append(f"{key} {'added' if before is None else 'removed'}")
        else:
            reasons.append(f"{key} changed")
    return ", ".join(reasons)
