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

A pick is honoured only while it still names the video it was made on: that take's
fingerprint is the one recorded with the pick. An edited shot is a new draw, so its pick falls
back to take 1 until the user picks again (and so do the picks of shots chained from it,
whose fingerprints changed with it).

A pick survives lowering ``takes``: "explore with 3 takes, pick take 2, set ``takes = 1``" is
the natural way to say "this one". The rule, `kept_takes`: a shot with ``takes = N`` and a
standing pick of take k has the takes ``1..N`` when k ≤ N, as always; when k > N it has
``1..N-1`` and take k, so still N takes, the picked one among them. So a shot with
``takes = 1`` and a pick of take 2 has one take, take 2: its render unit is ``id#2`` with
``take_fingerprint(shot's, 2)``, the fingerprint it was picked on. Nothing is rendered, its
``<id>.mp4`` stays take 2, its lock entry keeps ``"pick": 2``, its chains keep following take
2 (their inputs do not change, so they stay cached), and `gc` keeps take 2 and removes the
takes no longer kept (take 1 and 3 here). Lowering ``takes`` never pays for a take the user
did not ask for. A pick beyond ``takes`` is only honoured as recorded (the fingerprint it was
made on), never from a pick made without one.

An approval pins a shot to one version (`Approval`): its approved take's fingerprint is the
version's own, whatever the shot's inputs are now, and a chain from it takes its frame input
from that fingerprint too. So an approved shot whose prompt (or ``[defaults]``, or
``prompt_prefix``) changed is still "rendered", and the shots chained from it keep theirs;
`Fingerprinted.unpinned` keeps the fingerprint it would have now, to say that its inputs
changed since.

Pure: file hashing is passed in as a function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from kling_pipe._shotlist.chains import chain_order
from kling_pipe._shotlist.rules import MAX_TAKES
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


@attrs.frozen(kw_only=True)
class Approval:
    """A shot's approval as recorded: the one version it holds, named by what made it."""

    #: The version's number: ``versions/<id>.v<N>.mp4``.
    version: int
    #: The take the version rendered: the shot's pick while it is approved.
    take: int
    #: The version's render unit's fingerprint when it was made: what the shot is pinned to.
    fingerprint: str
    #: The version's bytes, to tell it from another render of the same inputs.
    sha256: str


def take_fingerprint(shot_fingerprint: str, take: int) -> str:
    """Return take *take*'s fingerprint: the shot's for take 1, else the shot's plus *take*."""
    if take == 1:
        return shot_fingerprint
    return digest({"recipe": RECIPE, "take_of": shot_fingerprint, "take": take})


def kept_takes(takes: int, pick: int) -> tuple[int, ...]:
    """Return the takes a shot of *takes* takes has with take *pick* picked (see the module).

    ``1..takes`` when the pick is among them; else ``1..takes-1`` and the pick: lowering
    ``takes`` below a standing pick keeps the picked take and as many others as asked for.
    """
    if pick <= takes:
        return tuple(range(1, takes + 1))
    return (*range(1, takes), pick)


def kept_keys(shot: Shot, pick: int) -> tuple[str, ...]:
    """Return the unit keys of *shot*'s takes with take *pick* picked (`kept_takes`)."""
    return tuple(unit_key(shot.id, take) for take in kept_takes(shot.takes, pick))


def take_inputs(inputs: Mapping[str, Any], take: int) -> dict[str, Any]:
    """Return take *take*'s inputs (kept with its records): the shot's, plus the take number."""
    return dict(inputs) if take == 1 else {**inputs, "take": take}


def shot_inputs(  # noqa: PLR0913 - keyword-only: what a chain frame follows
    shot: Shot,
    model: str,
    *,
    image_hash: Callable[[LocalImage], str],
    chain_fp: Mapping[str, str],
    picks: Mapping[str, int] | None = None,
    pinned: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the inputs a fingerprint covers, as plain data (also kept to explain staleness).

    *chain_fp* holds each source shot's fingerprint; *picks* the take in force for a source
    (take 1 when it has none): a chain's frame comes from that take's video. *pinned* holds
    the fingerprint of an approved source's version, which its chains follow instead.
    """
    in_force = picks or {}
    pins = pinned or {}

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
                    "shot": pins.get(source) or take_fingerprint(chain_fp[source], take),
                    "frame": which,
                }
                if take != 1:
                    chained["take"] = take
                return chained

    covered: dict[str, Any] = {
        "recipe": RECIPE,
        "model": model,
        "prompt": shot.final_prompt,
        "duration": shot.duration,
        "image": frame(shot.image),
        "last_image": frame(shot.last_image),
    }
    fields = model_fields_as_data(shot)
    if fields:  # absent when none is set: a shot of the old form fingerprints as before
        covered["fields"] = fields
    return covered


def model_fields_as_data(shot: Shot) -> dict[str, Any]:
    """Return the model fields a shot sets as plain JSON data (numbers as exact strings)."""
    data: dict[str, Any] = {}
    for name, value in shot.model_fields.items():
        if isinstance(value, tuple):
            data[name] = [
                {
                    "prompt": shot.prompt_prefix + p.prompt + shot.prompt_suffix,
                    "duration": p.duration,
                }
                for p in value
            ]
        elif isinstance(value, Decimal):
            data[name] = format(value.normalize(), "f")  # 0.60 and 0.6 are one request
        else:
            data[name] = value
    return data


def recorded_chain(
    recorded: Mapping[str, Any],
    *,
    fingerprints: Mapping[str, str],
    picks: Mapping[str, int],
    shot_ids: Iterable[str],
) -> ChainImage | None:
    """Return the chain a recorded chain frame (see `shot_inputs`) is today, if any is.

    A recorded chain names its source by the fingerprint of the take its frame came from, not
    by the source's id: the frame can be had again only from the shot whose picked take has
    that fingerprint now (its video is the one the frame came from, or a render of the very
    same inputs). None when no shot's does (the source was edited, or another take picked,
    since): that frame cannot be had any more. *fingerprints* are by unit key, *picks* by
    shot id (take 1 when absent).
    """
    which = recorded.get("frame")
    if not isinstance(recorded.get("shot"), str) or which not in ("first", "last"):
        return None
    for shot_id in shot_ids:
        if fingerprints.get(unit_key(shot_id, picks.get(shot_id, 1))) == recorded["shot"]:
            return ChainImage(shot=shot_id, frame=which)
    return None


#: `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, built once
#: rather than at every shot's digest.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(inputs: Mapping[str, Any]) -> str:
    """Hash fingerprint inputs canonically (sorted keys, no whitespace, UTF-8)."""
    canonical = _CANONICAL.encode(inputs)
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen(kw_only=True)
class Fingerprinted:
    """Every render unit's fingerprint and inputs, and the pick in force for every shot.

    The units are each shot's `kept_takes`: a shot with a pick kept past a lowered ``takes``
    has no take 1 among them, so the shot's own fingerprint is kept apart (`shots`).
    """

    #: By unit key (a shot's id is the key of its take 1): what each take's fingerprint covers.
    inputs: dict[str, dict[str, Any]]
    #: By unit key.
    fingerprints: dict[str, str]
    #: By shot id: the take whose video is the shot's (1 unless a pick is in force).
    picks: dict[str, int]
    #: By shot id: the shot's own fingerprint (its take 1's), whatever takes it has.
    shots: dict[str, str] = attrs.Factory(dict)
    #: By shot id: what the shot's own fingerprint covers.
    shot_inputs: dict[str, dict[str, Any]] = attrs.Factory(dict)
    #: By shot id, for each approved shot: the approval in force.
    approvals: dict[str, Approval] = attrs.Factory(dict)
    #: By shot id, for each approved shot: the fingerprint its approved take would have now,
    #: from the shot list as it is; not the pinned one once its inputs changed.
    unpinned: dict[str, str] = attrs.Factory(dict)

    def inputs_changed(self, shot_id: str) -> bool:
        """Whether an approved shot's inputs changed since its approved version was made."""
        approval = self.approvals.get(shot_id)
        return approval is not None and self.unpinned[shot_id] != approval.fingerprint

    def picked_key(self, shot_id: str) -> str:
        """Return the unit key of the shot's picked take."""
        return unit_key(shot_id, self.picks.get(shot_id, 1))

    def keys_of(self, shot: Shot) -> tuple[str, ...]:
        """Return the unit keys of the shot's takes as they are now (`kept_takes`)."""
        return kept_keys(shot, self.picks.get(shot.id, 1))


def fingerprint_units(
    shotlist: ShotList,
    hash_file: HashFile,
    picks: Mapping[str, RecordedPick] | None = None,
    approvals: Mapping[str, Approval] | None = None,
) -> Fingerprinted:
    """Fingerprint every take of every shot, sources before the shots chained from them.

    *picks* are the picks recorded (by shot id); each is honoured only while it is valid (see
    the module docstring), in chain order, since a source's pick changes the fingerprints of
    the shots chained from it and so whether their own picks still hold. *approvals* (by
    shot id) pin an approved shot's take to its version: the take is the shot's pick and
    has the version's fingerprint, and chains follow it (see the module docstring).
    """
    cache: dict[Path, str] = {}
    recorded = picks or {}
    held = {
        shot_id: approval
        for shot_id, approval in (approvals or {}).items()
        if 1 <= approval.take <= MAX_TAKES
    }

    written: dict[str, str] = {}  # by the path as written: most frames are shared

    def image_hash(image: LocalImage) -> str:
        known = written.get(image.path)
        if known is None:
            path = shotlist.resolve(image)
            if path not in cache:
                cache[path] = hash_file(path)
            known = written[image.path] = cache[path]
        return known

    shot_fps: dict[str, str] = {}
    bases: dict[str, dict[str, Any]] = {}
    in_force: dict[str, int] = {}
    inputs: dict[str, dict[str, Any]] = {}
    fps: dict[str, str] = {}
    pinned: dict[str, str] = {}
    unpinned: dict[str, str] = {}
    for shot in chain_order(shotlist.shots):
        base = shot_inputs(
            shot,
            shot.model,
            image_hash=image_hash,
            chain_fp=shot_fps,
            picks=in_force,
            pinned=pinned,
        )
        bases[shot.id], shot_fps[shot.id] = base, digest(base)
        approval = held.get(shot.id)
        if approval is None:
            pick = _pick_in_force(shot, shot_fps[shot.id], recorded.get(shot.id, (1, None)))
        else:
            pick = approval.take
            pinned[shot.id] = approval.fingerprint
            unpinned[shot.id] = take_fingerprint(shot_fps[shot.id], pick)
        in_force[shot.id] = pick
        for take in kept_takes(shot.takes, pick):
            key = unit_key(shot.id, take)
            inputs[key] = take_inputs(base, take)
            fps[key] = take_fingerprint(shot_fps[shot.id], take)
        if approval is not None:
            fps[unit_key(shot.id, pick)] = approval.fingerprint
    return Fingerprinted(
        inputs=inputs,
        fingerprints=fps,
        picks=in_force,
        shots=shot_fps,
        shot_inputs=bases,
        approvals=held,
        unpinned=unpinned,
    )


def _pick_in_force(shot: Shot, shot_fp: str, recorded: RecordedPick) -> int:
    """Return the take of *recorded* if it still holds (see the module), else 1."""
    take, made_on = recorded
    if not 1 <= take <= MAX_TAKES:
        return 1
    made_for = take_fingerprint(shot_fp, take)
    if take <= shot.takes:
        return take if made_on in (None, made_for) else 1
    return take if made_on == made_for else 1  # kept past a lowered `takes`: as recorded only


def fingerprint_inputs(
    shotlist: ShotList, hash_file: HashFile, picks: Mapping[str, RecordedPick] | None = None
) -> dict[str, dict[str, Any]]:
    """Return every shot's fingerprint inputs (its take 1's), by shot id."""
    units = fingerprint_units(shotlist, hash_file, picks)
    return {s.id: units.shot_inputs[s.id] for s in chain_order(shotlist.shots)}


def fingerprints(
    shotlist: ShotList, hash_file: HashFile, picks: Mapping[str, RecordedPick] | None = None
) -> dict[str, str]:
    """Return every shot's fingerprint (its take 1's), by shot id."""
    units = fingerprint_units(shotlist, hash_file, picks)
    return {s.id: units.shots[s.id] for s in chain_order(shotlist.shots)}


#: The inputs a person changes, in the order a change is told.
_TOLD = ("model", "prompt", "duration", "image", "last_image", "fields")


def changed_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Name the inputs that differ between two recorded inputs ("prompt", "image", ...)."""
    return [key for key in _TOLD if old.get(key) != new.get(key)]


def explain_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Say in a few words why a shot's fingerprint changed, from its old and new inputs."""
    changed = changed_inputs(old, new)
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
