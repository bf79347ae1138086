"""One take, start to finish: continue or submit, watch, deliver, place. No rule lives here.

What a take needs now was decided before the run (`kling_pipe._decisions.resume`); when it
may start, whether its submit may go, and what its end cost, are the engine's decisions
(`kling_pipe._decisions.engine`); what a lost answer's history means is the settle step's.
This unit carries one take through the steps and says how it ended: normally, or by raising
`AttemptError` with the outcome it saw. Whether that cost money is read from the records, not
decided here (`engine.attempt_ended`).

The steps, top to bottom:

1. **continue** an earlier run's task (poll it, fetch its output again) or settle the intent
   it left (`walk` awaits the settling the scheduler started with the run); or
2. **inputs and submit**: upload the frames (`inputs`), ask the submit protocol for a task;
   or, for a copy of an identical take, **copy** that take's video once it is delivered;
3. **watch** the task until it ends (`watching`);
4. **deliver** its video (`delivery`), checked, as the shot's next version (or back to its
   own version, when it is fetched again);
5. **place** the picked take's version at ``<id>.mp4``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kling_pipe._backends.base import (
    Backend,
    Download,
    Prediction,
    SubmitRequest,
    parse_task_id,
)
from kling_pipe._decisions import expiry
from kling_pipe._decisions.attempts import Attempt, AttemptState
from kling_pipe._decisions.engine import Ending, Outcome
from kling_pipe._decisions.plan import PlannedTake
from kling_pipe._decisions.results import ShotResult, ShotState
from kling_pipe._decisions.resume import Resume
from kling_pipe._records.store import Store
from kling_pipe._running.delivery import Delivery, DeliveryError
from kling_pipe._running.inputs import InputError, ShotInputs, relative_to_shotlist
from kling_pipe._running.proving import Subject, subject_of
from kling_pipe._running.submitting import SubmitFailedError, SubmitProtocol
from kling_pipe._running.watching import TaskWatcher, WatchError
from kling_pipe._shotlist.catalogue import model_entry
from kling_pipe._shotlist.fingerprint import recorded_chain
from kling_pipe._shotlist.rules import ZERO_USD
from kling_pipe._shotlist.specs import ShotList, UrlImage, unit_key
from kling_pipe.exceptions import AuthError, BackendError, KlingPipeError, NotFoundError

log = logging.getLogger("kling_pipe")


class AttemptError(KlingPipeError):
    """An attempt ended without the take's video; `ending` says how, for the engine."""

    def __init__(
        self, message: str, ending: Ending, *, state: ShotState = "failed", code: int | None = None
    ) -> None:
        self.ending = ending
        self.state: ShotState = state
        self.code = code
        super().__init__(message)


class FrameNotYetError(KlingPipeError):
    """An earlier run's intent was sent with a chain frame whose source has no video yet.

    The source renders in this run: the intent can be proved once `source`'s video lands.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"shot {source!r} has no video yet")


def _failed(message: str, *, retryable: bool = False, fatal: bool = False) -> AttemptError:
    return AttemptError(message, Ending(outcome="failed", retryable=retryable, fatal=fatal))


#: How an earlier run's intent was settled at the start of this run: its task, or the error.
Settled = tuple[Prediction | None, BaseException | None]


class Walk:
    """Carries takes of one run through their steps; see the module docstring."""

    def __init__(  # noqa: PLR0913 - the run's collaborators, keyword-only
        self,
        *,
        shotlist: ShotList,
        backend: Backend,
        store: Store,
        origin: str,
        resume: Mapping[str, Resume],
        inputs: Mapping[str, Mapping[str, Any]],
        fingerprints: Mapping[str, str],
        picks: Mapping[str, int],
        owner_prefix: str,
        shot_inputs: ShotInputs,
        delivery: Delivery,
        watcher: TaskWatcher,
        protocol: SubmitProtocol,
        results: Mapping[str, ShotResult],
        report: Callable[[str, ShotState, str], None],
        earlier: Callable[[int], Awaitable[Settled] | None],
        begun: dict[str, int],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_final: Callable[[PlannedTake, float | None], None] = lambda *_: None,
        awaited: Callable[[str], bool] = lambda _: False,
    ) -> None:
        self._shotlist = shotlist
        self._backend = backend
        self._store = store
        self._origin = origin
        self._resume = resume
        self._inputs = inputs
        self._fingerprints = fingerprints
        self._picks = picks
        self._owner_prefix = owner_prefix
        self._shot_inputs = shot_inputs
        self._delivery = delivery
        self._watcher = watcher
        self._protocol = protocol
        self._results = results
        self._report = report
        self._earlier = earlier
        #: Each unit's current attempt in the store, once it has one (the submit protocol
        #: notes the intents it writes here too).
        self._attempt_of = begun
        #: Our clock: whether an earlier run's task is past the days WaveSpeed keeps outputs.
        self._now = now
        #: Told when a unit's task completed on the server (with what it took to render, if
        #: the watch saw it render), before its video downloads.
        self._on_final = on_final
        #: Whether shots of the run wait for a unit's video (a chain from it, still to start).
        self._awaited = awaited

    def recorded_state(self, unit: str) -> AttemptState | None:
        """Return the recorded state of the unit's current attempt (None: it has none)."""
        attempt_id = self._attempt_of.get(unit)
        if attempt_id is None:
            return None
        attempt = self._store.attempt(attempt_id)
        return None if attempt is None else attempt.state

    def picked_video(self, shot_id: str) -> Path | None:
        """Return the video a chain from *shot_id* takes its frame from: its picked take's."""
        result = self._results.get(unit_key(shot_id, self._picks.get(shot_id, 1)))
        return None if result is None else result.file

    async def walk(self, unit: PlannedTake, result: ShotResult) -> None:
        """Carry one attempt of *unit* to its video, or raise AttemptError saying how it ended."""
        self._attempt_of.pop(unit.id, None)
        if unit.copy_of is not None:
            await self._copy(unit, result)
            return
        resume = self._resume.get(unit.id) if result.attempts == 1 else None
        prediction = await self._continue(unit, resume)
        if prediction is None:
            prediction = await self._start_task(unit)
        result.task_id = prediction.id
        if prediction.id not in result.task_ids:
            result.task_ids.append(prediction.id)
        self._report(unit.id, "processing", f"task {prediction.id}")
        attempt_id = self._attempt_of[unit.id]
        try:
            final = await self._watcher.until_final(
                prediction, result, awaited=functools.partial(self._awaited, unit.id)
            )
        except WatchError as exc:
            raise _failed(str(exc), fatal=exc.fatal) from None
        finally:
            self._store.record_polls(attempt_id, result.polls)
        self._store.record_final(
            attempt_id,
            completed=final.succeeded,
            error="" if final.succeeded else final.failure_reason,
            code=final.code,
        )
        if not final.succeeded:
            # WaveSpeed refunds a failed task, so a new attempt may be worth paying for.
            raise AttemptError(
                final.failure_reason, Ending(outcome="failed", retryable=True), code=final.code
            )
        self._on_final(unit, self._watcher.rendered_s(prediction.id))
        self._report(unit.id, "downloading", "")
        video = await self._deliver(unit, prediction.id, final.outputs[0], attempt_id)
        self._finish(result, video, attempt_id)
        if result.picked:
            await self._place_pick(unit.shot.id, video, result)

    def _finish(self, result: ShotResult, video: Download, attempt: int) -> None:
        result.file, result.sha256, result.bytes = video.path, video.sha256, video.size
        self._store.record_download(
            attempt,
            file=relative_to_shotlist(video.path, self._shotlist),
            sha256=video.sha256,
            size=video.size,
        )

    async def _continue(self, unit: PlannedTake, resume: Resume | None) -> Prediction | None:
        """Pick up a task an earlier run created; None when there is none to continue."""
        if resume is None or resume.attempt is None:
            return None
        key, attempt = unit.id, resume.attempt
        if resume.kind in ("poll", "refetch") and attempt.task_id is not None:
            self._attempt_of[key] = attempt.id
            self._report(key, "processing", f"resuming task {attempt.task_id}")
            return await self._fetch(attempt.task_id, key)
        if resume.kind == "reconcile":
            self._attempt_of[key] = attempt.id
            self._report(key, "submitting", "settling a lost answer through the history")
            settling = self._earlier(attempt.id)
            if settling is None:  # its subject could not be made at the start: settle now
                found = await self._protocol.settle_recorded(
                    await self.subject(unit, name=f"intent:{attempt.id}"), attempt
                )
                error: BaseException | None = None
            else:
                found, error = await settling
            if isinstance(error, SubmitFailedError):
                raise _submit_failed(error)
            if error is not None:
                raise error
            if found is not None:
                return found
            self._attempt_of.pop(key, None)  # never created: a new attempt submits anew
        return None

    async def _fetch(self, task_id: str, unit: str) -> Prediction:
        try:
            # A recorded id is text from a file: parsed like any id from outside (a bad one
            # is a ProtocolError, reported below like any failed look-up).
            known = parse_task_id(task_id, f"the recorded task id of {unit}")
            return await self._backend.get_prediction(known)
        except NotFoundError:
            raise self._expired_or(
                unit,
                _failed(
                    f"task {task_id} from an earlier run is unknown to the server (expired or "
                    f"deleted); run again with --rerender {unit} to render it anew (costs money)"
                ),
            ) from None
        except AuthError as exc:
            raise _failed(str(exc), fatal=True) from None
        except BackendError as exc:
            raise _failed(f"task {task_id} could not be looked up: {exc}") from None

    async def _start_task(self, unit: PlannedTake) -> Prediction:
        key, shot = unit.id, unit.shot
        self._report(key, "uploading", "")
        try:
            image_url = None if shot.image is None else await self._shot_inputs.url(shot.image)
            last_url = (
                None if shot.last_image is None else await self._shot_inputs.url(shot.last_image)
            )
        except AuthError as exc:
            raise _failed(str(exc), fatal=True) from None
        except InputError as exc:
            raise _failed(str(exc)) from None
        except (BackendError, OSError) as exc:
            raise _failed(f"preparing the input images failed: {exc}") from None
        entry = model_entry(shot.model)
        request = SubmitRequest(
            model=shot.model,
            prompt="" if shot.multi_prompt is not None else shot.final_prompt,
            image_url=image_url,
            last_image_url=last_url,
            end_frame_field=entry.end_frame_field or "last_image",
            duration=shot.duration,
            fields=shot.request_fields,
        )
        self._report(key, "submitting", "")
        subject = await self.subject(unit)
        try:
            prediction, _ = await self._protocol.submit(subject, request)
        except SubmitFailedError as failure:
            raise _submit_failed(failure) from None
        return prediction

    async def subject(self, unit: PlannedTake, *, name: str | None = None) -> Subject:
        """Describe a take for the submit protocol: what it records, and what proves a task."""
        resume = self._resume.get(unit.id)
        try:
            return await subject_of(
                unit,
                shot_inputs=self._shot_inputs,
                model=unit.shot.model,
                fingerprint="" if resume is None else resume.fingerprint,
                inputs=self._inputs.get(unit.id, {}),
                owner_prefix=self._owner_prefix,
                name=name,
            )
        except InputError as exc:
            raise _failed(str(exc)) from None

    async def intent_subject(self, attempt: Attempt, unit: PlannedTake | None) -> Subject:
        """Describe an intent an earlier run left, for settling it; *unit* if it is current.

        A current take's intent is proved with the take's own frames. An intent of inputs no
        take has any more (the shot was edited, renamed or removed since) is proved with the
        frames its recorded inputs name, where they can still be had (`_recorded_frame`): it
        must be settled all the same, so that its task, if it exists, is never taken by
        another submit. Raises FrameNotYetError when a frame it names is a chain frame whose
        source renders in this run: it can be described once that source's video lands.
        """
        name = f"intent:{attempt.id}"
        if unit is not None:
            return await self.subject(unit, name=name)
        inputs = json.loads(attempt.inputs)
        first_key, first = await self._recorded_frame(inputs.get("image"))
        last_key, last = await self._recorded_frame(inputs.get("last_image"))
        return Subject(
            name=name,
            shot_id=attempt.shot_id,
            owner=f"{self._owner_prefix}#{attempt.shot_id}",
            fingerprint=attempt.fingerprint,
            inputs=attempt.inputs,
            model=attempt.model,
            duration=attempt.duration,
            cost=attempt.cost,
            key=(first_key or f"intent:{attempt.id}", last_key),
            first=first,
            last=last,
            has_last=inputs.get("last_image") is not None,
            first_url=_url_of(inputs.get("image")),
            last_url=_url_of(inputs.get("last_image")),
        )

    def placeholder(self, attempt: Attempt) -> Subject:
        """Name an intent whose frames cannot be had yet, to hold its turn until they can."""
        return Subject(
            name=f"intent:{attempt.id}",
            shot_id=attempt.shot_id,
            owner=f"{self._owner_prefix}#{attempt.shot_id}",
            fingerprint=attempt.fingerprint,
            inputs=attempt.inputs,
            model=attempt.model,
            duration=attempt.duration,
            cost=attempt.cost,
            key=(f"intent:{attempt.id}", None),
            first=None,
        )

    async def _recorded_frame(self, recorded: object) -> tuple[str | None, Path | None]:
        """Find a frame as fingerprinted inputs record it: a file's sha256, a URL, a chain.

        A chain frame is had from the shot whose picked take has the fingerprint it records,
        exactly as a current take's is (`ShotInputs.proof_image`): its identity is then the
        frame's sha256, so the submit turn sees it alike to a current take chained from the
        same video. A chain whose source has changed since names a frame no video gives any
        more: its identity is the record itself, and it has no picture (it cannot be proved).
        """
        if not isinstance(recorded, dict):
            return None, None
        if isinstance(recorded.get("url"), str):
            return await self._shot_inputs.proof_image(UrlImage(url=recorded["url"]))
        sha256 = recorded.get("sha256")
        if isinstance(sha256, str):
            return sha256, await self._shot_inputs.local_image_with(sha256)
        chain = recorded_chain(
            recorded,
            fingerprints=self._fingerprints,
            picks=self._picks,
            shot_ids=[shot.id for shot in self._shotlist.shots],
        )
        if chain is None:  # a chain frame of a video no shot renders any more
            return json.dumps(recorded, sort_keys=True), None
        if self.picked_video(chain.shot) is None:
            raise FrameNotYetError(unit_key(chain.shot, self._picks.get(chain.shot, 1)))
        try:
            return await self._shot_inputs.proof_image(chain)
        except InputError as exc:
            log.warning("an earlier submit's first frame cannot be had: %s", exc)
            return json.dumps(recorded, sort_keys=True), None

    async def _deliver(
        self, unit: PlannedTake, task_id: str, url: str, attempt_id: int
    ) -> Download:
        """Download the take's video as a version of its shot; a bad one fails the take."""
        shot = unit.shot
        try:
            return await self._delivery.fetch(
                shot_id=unit.id,
                duration=shot.duration,
                task_id=task_id,
                url=url,
                dest=self._own_version(unit, attempt_id),
                source=self._picks.get(shot.id, 1) == unit.take,
            )
        except DeliveryError as failure:
            if failure.rejected:
                self._store.record_rejected(attempt_id, str(failure))
            if failure.gone:
                raise self._expired_or(unit.id, _failed(str(failure))) from None
            raise _failed(str(failure)) from None

    def _expired_or(self, unit: str, failure: AttemptError) -> AttemptError:
        """Say the unit's output expired (and record it) if its task is old enough, else *failure*.

        Only past the days WaveSpeed keeps outputs (`expiry.has_expired`) is a missing task or
        output taken for expiry: before, it may be a glitch, and the next run looks again.
        """
        attempt_id = self._attempt_of.get(unit)
        attempt = None if attempt_id is None else self._store.attempt(attempt_id)
        if attempt is None or not expiry.has_expired(attempt.sent_at, self._now()):
            return failure
        message = expiry.expired_message(unit, attempt)
        self._store.record_expired(attempt.id, message)
        return AttemptError(message, Ending(outcome="failed"), state="expired")

    def _own_version(self, unit: PlannedTake, attempt_id: int) -> Path | None:
        """Return the version an attempt's video already is (fetched again), else None.

        Only a version of the take's own shot in this run's folder counts: a file of an older
        layout, or elsewhere, makes way for a new version instead.
        """
        attempt = self._store.attempt(attempt_id)
        if attempt is None or attempt.file is None:
            return None
        layout = self._delivery.layout
        named = layout.version_of(attempt.file)
        if named is None or named[0] != unit.shot.id:
            return None
        return layout.version(*named)

    async def _copy(self, unit: PlannedTake, result: ShotResult) -> None:
        """Give a take the video of the identical take it copies: no request, nothing paid."""
        assert unit.copy_of is not None
        original = self._results[unit.copy_of]
        if original.file is None or original.sha256 is None or original.task_id is None:
            raise _failed(f"same inputs as {unit.copy_of!r}, which has no video")
        self._report(unit.id, "downloading", f"copying the video of {unit.copy_of}")
        dest = await self._delivery.copy_version(unit.id, original.file)
        resume = self._resume[unit.id]
        copied = self._store.attempt(self._attempt_of[unit.copy_of])
        assert copied is not None
        attempt_id = self._store.adopt(
            shot_id=unit.id,
            fingerprint=resume.fingerprint,
            inputs=self._inputs.get(unit.id, {}),
            model=unit.shot.model,
            duration=unit.shot.duration,
            cost=ZERO_USD,
            task_id=original.task_id,
            sent_at=copied.sent_at,
            origin=self._origin,
            file=relative_to_shotlist(dest, self._shotlist),
            sha256=original.sha256,
            size=original.bytes,
        )
        self._attempt_of[unit.id] = attempt_id
        self._store.record_file(
            relative_to_shotlist(dest, self._shotlist),
            kind="output",
            origin=self._origin,
            sha256=original.sha256,
            shot_id=unit.id,
        )
        video = Download(path=dest, size=original.bytes or 0, sha256=original.sha256)
        result.task_id = original.task_id
        result.file, result.sha256, result.bytes = dest, original.sha256, original.bytes
        if result.picked:
            await self._place_pick(unit.shot.id, video, result)

    async def _place_pick(self, shot_id: str, video: Download, result: ShotResult) -> None:
        """Make ``<id>.mp4`` the picked take just delivered, unless it was delivered there.

        The take is rendered and recorded by now: a file that cannot be placed (a full disk)
        is a warning, not a failed take, and the next run places it before anything else.
        """
        try:
            await self._delivery.place_pick(shot_id, video)
        except OSError as exc:
            placed = self._delivery.layout.picked(shot_id)
            result.warnings.append(f"{placed} could not be made this take ({exc}); run again")


def _submit_failed(failure: SubmitFailedError) -> AttemptError:
    outcome: Outcome = "uncertain" if failure.state == "uncertain" else "failed"
    return AttemptError(
        str(failure), Ending(outcome=outcome, fatal=failure.fatal), state=failure.state
    )


def _url_of(recorded: object) -> str | None:
    """Return the URL a recorded frame names, if it is one (inputs keep it as written)."""
    if isinstance(recorded, dict) and isinstance(recorded.get("url"), str):
        return str(recorded["url"])
    return None


__all__ = ["AttemptError", "FrameNotYetError", "Settled", "Walk"]
