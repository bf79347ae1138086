"""Shot fingerprints: one stable hash of everything that determines a shot's video.

Two shots with the same fingerprint would be sent the same request, so a fingerprint already
rendered is never paid for again. It covers the model, the final prompt, the duration and each
frame *by content*: a local file's sha256 (so renaming or moving it changes nothing, editing
it does), a URL as written, and for a chain the source shot's fingerprint and the frame (so an
edit to a source re-renders the shots chained from it). What the file looks like — comments,
whitespace, the order of shots, the file's name — is not an input and changes nothing.

Pure: file hashing is passed in as a function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kling_pipe._decisions.plan import chain_order
from kling_pipe._shotlist.specs import ChainImage, ImageRef, LocalImage, Shot, ShotList, UrlImage

#: Bumped when the fingerprint's recipe changes, so old records stop matching.
RECIPE = 1

HashFile = Callable[[Path], str]


def shot_inputs(
    shot: Shot, model: str, *, image_hash: Callable[[LocalImage], str], chain_fp: Mapping[str, str]
) -> dict[str, Any]:
    """Return the inputs a fingerprint covers, as plain data (also kept to explain staleness)."""

    def frame(image: ImageRef | None) -> dict[str, str] | None:
        match image:
            case None:
                return None
            case LocalImage():
                return {"sha256": image_hash(image)}
            case UrlImage(url=url):
                return {"url": url}
            case ChainImage(shot=source, frame=which):
                return {"shot": chain_fp[source], "frame": which}

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


def fingerprint_inputs(shotlist: ShotList, hash_file: HashFile) -> dict[str, dict[str, Any]]:
    """Return every shot's fingerprint inputs, by shot id; sources before the shots chained."""
    cache: dict[Path, str] = {}

    def image_hash(image: LocalImage) -> str:
        path = shotlist.resolve(image)
        if path not in cache:
            cache[path] = hash_file(path)
        return cache[path]

    fps: dict[str, str] = {}
    inputs: dict[str, dict[str, Any]] = {}
    for shot in chain_order(shotlist.shots):
        inputs[shot.id] = shot_inputs(
            shot, shotlist.storyboard.model, image_hash=image_hash, chain_fp=fps
        )
        fps[shot.id] = digest(inputs[shot.id])
    return inputs


def fingerprints(shotlist: ShotList, hash_file: HashFile) -> dict[str, str]:
    """Return every shot's fingerprint, by shot id."""
    return {sid: digest(i) for sid, i in fingerprint_inputs(shotlist, hash_file).items()}


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
                reasons.append(f"{key}: its source shot changed")
                continue
            reasons.append(f"{key} changed")
        elif before is None or after is None:
            reasons.append(f"{key} {'added' if before is None else 'removed'}")
        else:
            reasons.append(f"{key} changed")
    return ", ".join(reasons)
