"""Reel names for an edit list: one per shot, at most eight characters, never shared.

A conform links an EDL event to its media by the reel name and the source timecode. Every
render starts at 00:00:00:00, so the reel alone tells two shots apart: two shots on one
reel become one clip in the editor's bin. CMX 3600 allows eight characters, and
OpenTimelineIO's writer cuts a name there by itself: ``harbour-wide`` and ``harbour-wide-b``
were both ``harbourw``.

`reel_names` keeps a shot's id as its reel where it can (its letters and digits, cut to
eight), so the edit list reads like the shot list. Shots whose cut names would be equal all
get the first five of their letters and digits and three characters of a hash of their id
instead: ``harbo2kx``, ``harbo9fq``. The names depend only on the set of ids, never on their
order, so the same storyboard gives the same reels in every export. Pure.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections import Counter
from collections.abc import Iterable
from typing import Final

#: The longest reel name CMX 3600 allows.
REEL_LENGTH: Final = 8
#: Reel names that mean a source other than media: black, bars, an auxiliary source.
_RESERVED: Final = frozenset({"bl", "blk", "black", "bars", "ax", "aux"})
#: Letters of an id kept in front of the hash when a shot's cut name is shared.
_KEPT: Final = 5
_DIGITS: Final = string.digits + string.ascii_lowercase


def reel_names(shot_ids: Iterable[str]) -> dict[str, str]:
    """Return a distinct reel name of at most eight letters and digits for each id."""
    ids = list(dict.fromkeys(shot_ids))
    wanted = {sid: _readable(sid) for sid in ids}
    shared = Counter(wanted.values())
    reels = {
        sid: name
        for sid, name in wanted.items()
        if shared[name] == 1 and name and name not in _RESERVED
    }
    taken = set(reels.values())
    for sid in sorted(sid for sid in ids if sid not in reels):
        salt = 0
        while (name := _hashed(sid, salt)) in taken or name in _RESERVED:
            salt += 1
        reels[sid] = name
        taken.add(name)
    return {sid: reels[sid] for sid in ids}


def _letters(shot_id: str) -> str:
    return re.sub(r"[^a-z0-9]", "", shot_id.lower())


def _readable(shot_id: str) -> str:
    return _letters(shot_id)[:REEL_LENGTH]


def _hashed(shot_id: str, salt: int) -> str:
    """Return the id's first letters and a short hash of it (salted when that one is taken)."""
    digest = hashlib.sha256(f"{shot_id}\0{salt}".encode() if salt else shot_id.encode())
    number = int.from_bytes(digest.digest()[:8], "big")
    tail = ""
    for _ in range(REEL_LENGTH - _KEPT):
        number, digit = divmod(number, len(_DIGITS))
        tail += _DIGITS[digit]
    return _letters(shot_id)[:_KEPT] + tail
