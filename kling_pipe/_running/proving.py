"""What a submit is for, and the proof that a task found in the history is that submit's.

WaveSpeed's history cannot say which request made a task; the one public fact that ties an
image-to-video task to its request is its output: Kling starts the video on the first frame
it was given (and ends it on the last, when one was). A `Subject` is what a submit is for (a
take of a shot, or an intent an earlier run left), with its frames as local pictures; a
`Prover` says whether a candidate's video shows them (`kling_pipe._decisions.proof` is the
pixel arithmetic), and whether two subjects' first frames are alike, which is what the
engine's submit turn needs to know.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from kling_pipe._backends.base import Backend, Prediction
from kling_pipe._decisions.plan import PlannedTake
from kling_pipe._decisions.proof import Verdict
from kling_pipe._shotlist.specs import LocalImage, UrlImage
from kling_pipe.exceptions import BackendError, KlingPipeError

if TYPE_CHECKING:
    from kling_pipe._decisions import proof
    from kling_pipe._running.inputs import ShotInputs, UrlFrames

log = logging.getLogger("kling_pipe")

#: The identities of a subject's first and last frames (a file's sha256, or a URL).
ProofKey = tuple[str, str | None]


@attrs.frozen(kw_only=True)
class Subject:
    """What one submit is for: what is recorded, and what proves a candidate to be its."""

    #: The engine's name for it: a unit key, or ``intent:<attempt id>`` for an earlier run's.
    name: str
    #: The unit key its records are filed under.
    shot_id: str
    #: Who owns its tasks in the registry: ``<shot list>#<unit key>``.
    owner: str
    fingerprint: str
    #: The fingerprinted inputs, as JSON.
    inputs: str
    model: str
    duration: int
    cost: Decimal
    #: The identities of its frames: what tells it apart from other subjects.
    key: ProofKey
    #: The first frame as a local file, for the proof; None when it cannot be had.
    first: Path | None
    #: The last frame as a local file, if the subject has one (see `has_last`).
    last: Path | None = None
    has_last: bool = False
    #: Where a frame given as a URL is, when `first` or `last` is not a local file.
    first_url: str | None = None
    last_url: str | None = None
    #: The local pictures its inputs name, as (sha256, path relative to the shot list):
    #: remembered with its intent, so that a later run can prove its task with them even
    #: once the shot list uses other pictures (`Store.record_intent`).
    pictures: tuple[tuple[str, str], ...] = ()


#: The frame identity of a shot with no first frame (text to video): every such shot of a
#: model shares it, since nothing in a task tells one text-to-video request from another, so
#: their submits are kept apart and a lost answer's candidates are never proved.
TEXT_ONLY = "text-to-video"


async def subject_of(  # noqa: PLR0913 - keyword-only: what a take's records and proof need
    unit: PlannedTake,
    *,
    shot_inputs: ShotInputs,
    model: str,
    fingerprint: str,
    inputs: Mapping[str, Any],
    owner_prefix: str,
    name: str | None = None,
) -> Subject:
    """Describe a take for the proof and its records: the one way a take becomes a `Subject`.

    The submit protocol proves a lost answer's candidates with it, `kling-pipe adopt` the
    task a user names. Raises `InputError` when a frame cannot be had (a chain's source has
    no video yet).
    """
    key, shot = unit.id, unit.shot
    first_id: str = TEXT_ONLY
    first: Path | None = None
    if shot.image is not None:  # text to video: no first frame, nothing to compare
        first_id, first = await shot_inputs.proof_image(shot.image)
    last_id, last = (None, None)
    if shot.last_image is not None:
        last_id, last = await shot_inputs.proof_image(shot.last_image)
    pictures = tuple(
        (identity, shot_inputs.relative(path))
        for image, identity, path in (
            (shot.image, first_id, first),
            (shot.last_image, last_id, last),
        )
        if isinstance(image, LocalImage) and identity is not None and path is not None
    )
    return Subject(
        name=name or key,
        shot_id=key,
        owner=f"{owner_prefix}#{key}",
        fingerprint=fingerprint,
        inputs=json.dumps(dict(inputs), sort_keys=True),
        model=model,
        duration=shot.duration,
        cost=unit.unit_cost,
        key=(first_id, last_id),
        first=first,
        last=last,
        has_last=shot.last_image is not None,
        first_url=shot.image.url if isinstance(shot.image, UrlImage) else None,
        last_url=shot.last_image.url if isinstance(shot.last_image, UrlImage) else None,
        pictures=pictures,
    )


class Prover(Protocol):
    """Says whether a completed candidate's output shows a subject's frames."""

    async def can_prove(self, subject: Subject) -> bool:
        """Whether any candidate could ever be proved the subject's (its frames can be had)."""
        ...

    async def verdict(self, candidate: Prediction, subject: Subject) -> Verdict:
        """Return match, mismatch, or undecided when it cannot tell."""
        ...

    async def indistinct(self, one: Subject, other: Subject) -> bool:
        """Whether a task of *other* could pass *one*'s proof (their first frames alike)."""
        ...


class VideoProver:
    """The real proof: fetch the candidate's video and compare its end frames with the shot's.

    Videos go to a private temporary folder and are deleted once compared: a candidate that
    is not ours must leave nothing behind.
    """

    def __init__(self, backend: Backend, url_frames: UrlFrames | None = None) -> None:
        self._backend = backend
        self._url_frames = url_frames
        self._pictures: dict[Path, asyncio.Future[proof.Picture | None]] = {}
        self._alike: dict[frozenset[str], bool] = {}

    async def can_prove(self, subject: Subject) -> bool:
        """See `Prover.can_prove`: its first frame (and last, if any) can be had as files."""
        first, last = await self._frames(subject)
        return first is not None and (not subject.has_last or last is not None)

    async def _frames(self, subject: Subject) -> tuple[Path | None, Path | None]:
        """Return the subject's frames as local files, a URL frame fetched (once) if need be."""
        first, last = subject.first, subject.last
        if self._url_frames is not None:
            if first is None and subject.first_url is not None:
                first = await self._url_frames.get(subject.first_url)
            if last is None and subject.last_url is not None:
                last = await self._url_frames.get(subject.last_url)
        return first, last

    async def indistinct(self, one: Subject, other: Subject) -> bool:
        """See `Prover.indistinct`: same picture, or pictures the proof does not call different.

        A subject without a local first frame cannot be compared: it is kept apart from others
        by the identity of its frame alone (never proved, it cannot take another's task).
        """
        if one.key[0] == other.key[0]:
            return True
        if one.first is None or other.first is None:
            return False
        pair = frozenset((one.key[0], other.key[0]))
        known = self._alike.get(pair)
        if known is None:
            from kling_pipe._decisions import proof  # noqa: PLC0415 - numpy loads when needed

            a, b = await self._picture(one.first), await self._picture(other.first)
            # Off the event loop: a comparison costs tens of milliseconds of CPU, and polls
            # and submits of other shots must not wait for it.
            verdict = (
                "undecided"
                if a is None or b is None
                else await asyncio.to_thread(proof.compare, a, b)
            )
            known = verdict != "mismatch"
            self._alike[pair] = known
        return known

    async def _picture(self, path: Path) -> proof.Picture | None:
        pending = self._pictures.get(path)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(_load_or_none, path))
            self._pictures[path] = pending
        return await asyncio.shield(pending)

    async def verdict(self, candidate: Prediction, subject: Subject) -> Verdict:
        """See `Prover.verdict`."""
        from kling_pipe._decisions import proof  # noqa: PLC0415 - decoding libraries load only when needed
        from kling_pipe._outputs import frames  # noqa: PLC0415 - likewise

        first_file, last_file = await self._frames(subject)
        if first_file is None or (subject.has_last and last_file is None):
            return "undecided"
        if not candidate.outputs:
            return "undecided"
        with tempfile.TemporaryDirectory(prefix="kling-pipe-proof-") as folder:
            dest = Path(folder) / "candidate.mp4"
            try:
                fetched = await self._backend.download(candidate.outputs[0], dest)
                # One decode per video (`frames.end_pictures`): kept by content, so comparing
                # it with another shot, or delivering it once proved, decodes it no more.
                # Awaited to its end even when cancelled: *folder* goes when this block ends.
                video_first, video_last = await frames.proof_end_pictures(
                    fetched.path, fetched.sha256
                )
            except (BackendError, OSError, ValueError, KlingPipeError) as exc:
                log.warning("candidate %s could not be compared: %s", candidate.id, exc)
                return "undecided"
        # The shot's own pictures are decoded once per run, whatever the candidates.
        first = await self._picture(first_file)
        last = None if last_file is None else await self._picture(last_file)
        if first is None or (last_file is not None and last is None):
            log.warning(
                "candidate %s could not be compared: a picture of the shot is unreadable",
                candidate.id,
            )
            return "undecided"
        verdict: Verdict = proof.prove(
            first=first, last=last, video_first=video_first, video_last=video_last
        )
        log.info("candidate %s for shot %s: %s", candidate.id, subject.shot_id, verdict)
        return verdict


def _load_or_none(path: Path) -> proof.Picture | None:
    from kling_pipe._outputs import media  # noqa: PLC0415 - decoding libraries load when needed

    try:
        return media.load_picture(path)
    except (OSError, KlingPipeError):
        return None
