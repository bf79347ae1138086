"""`kling-pipe adopt FILE SHOT TASK_ID`: make a task the user checked a take's own, paying nothing.

A shot left `uncertain` names the candidates its lost answer's history showed; until now the
only way on was ``--resubmit-uncertain``, which pays again. Adopting looks the named task up,
runs the frame proof on it (the very `Prover` the submit protocol settles lost answers with,
`VideoProver`), says what it found, and decides as `kling_pipe._decisions.adoption` says:
a match is adopted, a mismatch never, an undecided proof only with ``--force``. An adopted
task is claimed in the user's registry (refused when another shot list owns it), recorded
as the take's task (on its uncertain or unsettled attempt when it has one, so nothing is
counted twice), and downloaded at once when it is complete; a task still rendering is
polled by the next run. No submit is ever sent: the backend is asked for one task and its
video, nothing else.

It holds the shot list's run lock, like `pick`, so it never races a run.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import attrs

from kling_pipe import _files
from kling_pipe._backends.base import (
    MOCK_PROCESSING_S,
    Backend,
    Prediction,
    TaskId,
    parse_task_id,
)
from kling_pipe._backends.connect import connect
from kling_pipe._backends.origins import describe_origin, origin_for
from kling_pipe._decisions.adoption import ADOPTABLE, Judgement, judge
from kling_pipe._decisions.plan import PlannedTake, describe_image, plan
from kling_pipe._decisions.resume import Resume
from kling_pipe._outputs.folders import preflight
from kling_pipe._records.assessment import (
    Assessment,
    adopt_lock,
    assess_shotlist,
    is_simulated,
    open_store,
    read_lock_of,
    takes_of,
    write_lock_for,
)
from kling_pipe._records.registry import Registry
from kling_pipe._records.store import RunLock, Store, state_dir_for
from kling_pipe._running.delivery import Delivery, DeliveryError
from kling_pipe._running.inputs import InputError, ShotInputs, relative_to_shotlist, url_frames
from kling_pipe._running.proving import Prover, VideoProver, subject_of
from kling_pipe._shotlist.loader import load
from kling_pipe._shotlist.specs import TAKE_SEPARATOR, ShotList, split_unit_key, unit_key
from kling_pipe.exceptions import KlingPipeError, NotFoundError

#: What becomes of an adopted task's video: in place now, or fetched by the next run.
Next = Literal["downloaded", "poll", "fetch"]


class AdoptRefusedError(KlingPipeError):
    """The task was not adopted; `judgement` says what the proof found, when it ran."""

    def __init__(self, message: str, *, judgement: Judgement | None = None, line: str = "") -> None:
        self.judgement = judgement
        #: The verdict as `describe_verdict` says it ("" when no proof ran).
        self.line = line
        super().__init__(message)


@attrs.frozen(kw_only=True)
class AdoptResult:
    """What `adopt_task` did: the verdict, and where the take's video stands now."""

    unit: str
    task_id: str
    #: The task's status when it was looked up.
    status: str
    judgement: Judgement
    next: Next
    #: The take's video, when it was downloaded now.
    file: Path | None = None
    #: Why the video is not in place yet, when it is not.
    note: str = ""
    simulated: bool = False

    @property
    def line(self) -> str:
        """The verdict, as `kling-pipe adopt` prints it first."""
        return describe_verdict(self.unit, self.task_id, self.status, self.judgement)


def describe_verdict(unit: str, task_id: str, status: str, judgement: Judgement) -> str:
    """Say what the proof found: ``gutter: task ... (completed): match: its video shows ...``."""
    return f"{unit}: task {task_id} ({status}): {judgement.verdict}: {judgement.why}"


def format_adoption(result: AdoptResult) -> str:
    """Say what `adopt` did, for people: the verdict, then where the video is or will be."""
    forced = " (--force)" if result.judgement.verdict != "match" else ""
    head = f"adopted{forced}: task {result.task_id} is now {result.unit}'s; nothing was paid"
    match result.next:
        case "downloaded":
            then = f"downloaded now: {result.file}"
        case "poll":
            then = "it is still rendering: the next run polls it and downloads its video"
        case _:
            then = f"the next run downloads its video ({result.note})"
    if result.next == "downloaded" and result.note:
        then += f"; {result.note}"
    return f"{result.line}\n{head}\n{then}"


async def adopt_task(  # noqa: PLR0913 - keyword-only, each with a default
    source: str | Path | ShotList,
    shot: str,
    task_id: str,
    *,
    backend: str | Backend = "mock",
    base_url: str | None = None,
    api_key: str | None = None,
    force: bool = False,
    prover: Prover | None = None,
    mock_processing_s: float = MOCK_PROCESSING_S,
) -> AdoptResult:
    """Adopt task *task_id* as the take *shot* (an id, or ``id#k``) names; pay nothing.

    Raises `AdoptRefusedError` when it is not adopted (a mismatch; an undecided proof without
    *force*; a task with no video; a task another shot list owns; a take that already has
    its task), a `ProtocolError` for a *task_id* not of the API's form, and the usual
    `KlingPipeError`s (a backend that cannot be reached, a shot list in use by a run).
    """
    shotlist = source if isinstance(source, ShotList) else load(source)
    task = parse_task_id(task_id, "TASK_ID")
    origin = origin_for(backend, base_url)
    key = _unit_key(shotlist, shot)
    hash_file = functools.cache(_files.sha256_file)

    def assessed(store: Store | None) -> Assessment:
        return assess_shotlist(
            shotlist, store, origin=origin, lock=read_lock_of(shotlist), hash_file=hash_file
        )

    # First without writing anything: a refused adoption leaves no trace.
    store = open_store(shotlist, create=False)
    try:
        _adoptable(assessed(store), key)
    finally:
        if store is not None:
            store.close()
    preflight(shotlist, origin)
    with contextlib.ExitStack() as stack:
        stack.enter_context(RunLock(state_dir_for(shotlist.source)))
        store = stack.enter_context(Store.open(state_dir_for(shotlist.source)))
        registry = stack.enter_context(Registry.open())
        lock = read_lock_of(shotlist)
        if lock is not None:
            adopt_lock(store, shotlist, lock, hash_file)
        assessment = assessed(store)
        resume = _adoptable(assessment, key)
        owner_prefix = str(shotlist.source.resolve())
        # Tasks the store holds, for registries that do not know them yet (as a run does).
        registry.claim_many(
            [(t, f"{owner_prefix}#{s}") for s, t in store.task_owners()], origin=origin
        )
        adoption = _Adoption(
            shotlist=shotlist,
            store=store,
            registry=registry,
            origin=origin,
            assessment=assessment,
            resume=resume,
            unit=next(u for u in _plan_units(shotlist, assessment) if u.id == key),
            owner_prefix=owner_prefix,
            task=task,
            force=force,
        )
        try:
            async with connect(
                backend, base_url, api_key, mock_processing_s, store.folder / "mock"
            ) as connected:
                result = await adoption.run(connected.backend, connected.base_url, prover)
        except AdoptRefusedError:
            raise  # nothing was recorded
        except BaseException:
            write_lock_for(shotlist, store, hash_file=hash_file)  # whatever was recorded
            raise
        write_lock_for(shotlist, store, hash_file=hash_file)
        return result
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


@attrs.frozen(kw_only=True)
class _Adoption:
    """One adoption's context, once the records are locked and read."""

    shotlist: ShotList
    store: Store
    registry: Registry
    origin: str
    assessment: Assessment
    resume: Resume
    unit: PlannedTake
    owner_prefix: str
    task: TaskId
    force: bool

    async def run(self, backend: Backend, base_url: str, prover: Prover | None) -> AdoptResult:
        """Look the task up, prove it, and adopt it (or refuse); download it when complete."""
        prediction = await self._look_up(backend)
        delivery = Delivery(
            backend=backend, store=self.store, shotlist=self.shotlist, origin=self.origin
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                if prover is None:
                    frames = await stack.enter_async_context(url_frames())
                    prover = VideoProver(backend, frames)
                judgement = await self._judge(prediction, backend, base_url, delivery, prover)
                line = describe_verdict(self.unit.id, self.task, prediction.status, judgement)
                if not judgement.adopt:
                    raise AdoptRefusedError(
                        f"task {self.task} not adopted: {judgement.refusal}",
                        judgement=judgement,
                        line=line,
                    )
                attempt_id = self._record(prediction, judgement, line)
                next_, file, note = await self._deliver(prediction, attempt_id, delivery)
            await delivery.frames.drain()
        finally:
            await delivery.frames.close()
        return AdoptResult(
            unit=self.unit.id,
            task_id=self.task,
            status=prediction.status,
            judgement=judgement,
            next=next_,
            file=file,
            note=note,
            simulated=is_simulated(self.origin),
        )

    async def _look_up(self, backend: Backend) -> Prediction:
        try:
            return await backend.get_prediction(self.task)
        except NotFoundError:
            raise AdoptRefusedError(
                f"task {self.task} is unknown to {describe_origin(self.origin)} (a typo, "
                "another account, or gone after WaveSpeed's 7 days); nothing was adopted"
            ) from None

    async def _judge(
        self,
        prediction: Prediction,
        backend: Backend,
        base_url: str,
        delivery: Delivery,
        prover: Prover,
    ) -> Judgement:
        """Run the frame proof on the task's video, if it has one, and judge it."""
        shot = self.unit.shot
        picks = self.assessment.picks
        views = takes_of(self.shotlist, self.assessment)

        def picked_video(source: str) -> Path | None:
            return next((v.file for v in views[source] if v.picked), None)

        inputs = ShotInputs(
            shotlist=self.shotlist,
            backend=backend,
            store=self.store,
            base_url=base_url,
            origin=self.origin,
            output_dir=delivery.layout.folder,
            now=lambda: datetime.now(UTC),
            video_of=picked_video,
            frames=delivery.frames,
        )
        try:
            subject = await subject_of(
                self.unit,
                shot_inputs=inputs,
                model=self.unit.shot.model,
                fingerprint=self.resume.fingerprint,
                inputs=self.assessment.inputs[self.unit.id],
                owner_prefix=self.owner_prefix,
            )
        except InputError:
            subject = None
        provable = subject is not None and await prover.can_prove(subject)
        proved = None
        if subject is not None and provable and prediction.succeeded:
            proved = await prover.verdict(prediction, subject)
        frames = "none: a text-to-video shot has no first frame"
        if shot.image is not None:
            frames = describe_image(shot.image, picks) + " first"
        if shot.last_image is not None:
            frames += f" and {describe_image(shot.last_image, picks)} last"
        return judge(
            status=prediction.status,
            model=prediction.model,
            wanted_model=self.unit.shot.model,
            proved=proved,
            provable=provable,
            frames=frames,
            force=self.force,
        )

    def _record(self, prediction: Prediction, judgement: Judgement, line: str) -> int:
        """Claim the task, then record it as the take's: on its unsettled attempt, or anew."""
        owner = f"{self.owner_prefix}#{self.unit.id}"
        if not self.registry.claim(self.task, owner=owner, origin=self.origin, proved=True):
            raise AdoptRefusedError(
                f"task {self.task} belongs to {self.registry.owner(self.task)} (another shot "
                "or shot list); not adopted",
                judgement=judgement,
                line=line,
            )
        latest = self.store.latest(self.unit.id, self.resume.fingerprint, self.origin)
        if latest is not None and latest.state in ("intent", "uncertain"):
            # The attempt that may have made it, and was paid for: it is that task's now.
            self.store.record_task(latest.id, self.task)
            self.registry.close_wire(self.owner_prefix, latest.id)
            attempt_id = latest.id
        else:
            attempt_id = self.store.adopt(
                shot_id=self.unit.id,
                fingerprint=self.resume.fingerprint,
                inputs=self.assessment.inputs[self.unit.id],
                model=self.unit.shot.model,
                duration=self.unit.shot.duration,
                cost=self.unit.unit_cost,
                task_id=self.task,
                sent_at=prediction.created_at,
                origin=self.origin,
                state="submitted",
            )
        if prediction.succeeded:
            self.store.record_final(attempt_id, completed=True)
        return attempt_id

    async def _deliver(
        self, prediction: Prediction, attempt_id: int, delivery: Delivery
    ) -> tuple[Next, Path | None, str]:
        """Download a complete task's video now; say what the next run does otherwise."""
        if not prediction.succeeded:
            return "poll", None, ""
        shot_id, take = split_unit_key(self.unit.id)
        pick = self.assessment.pick(shot_id)
        try:
            video = await delivery.fetch(
                shot_id=self.unit.id,
                duration=self.unit.shot.duration,
                task_id=self.task,
                url=prediction.outputs[0],
                source=take == pick,
            )
        except DeliveryError as failure:
            if failure.rejected:
                self.store.record_rejected(attempt_id, str(failure))
            return "fetch", None, f"downloading it now failed: {failure}"
        self.store.record_download(
            attempt_id,
            file=relative_to_shotlist(video.path, self.shotlist),
            sha256=video.sha256,
            size=video.size,
        )
        if take == pick:
            try:
                await delivery.place_pick(shot_id, video)
            except OSError as exc:
                return "downloaded", video.path, f"{shot_id}.mp4 could not be made ({exc})"
        return "downloaded", video.path, ""


def _unit_key(shotlist: ShotList, name: str) -> str:
    """Return the unit key *name* gives (``id``, ``id#k``), or refuse it in one line."""
    shot_id, sep, take_text = name.partition(TAKE_SEPARATOR)
    ids = [s.id for s in shotlist.shots]
    if shot_id not in ids:
        close = difflib.get_close_matches(shot_id, ids, n=1, cutoff=0.6)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise AdoptRefusedError(f'{shotlist.source}: no shot "{shot_id}" in the shot list{hint}')
    if sep and not (take_text.isdigit() and int(take_text) >= 1):
        raise AdoptRefusedError(f"{name}: a take is written id#k, k from 1")
    return unit_key(shot_id, int(take_text) if sep else 1)


def _adoptable(assessment: Assessment, unit: str) -> Resume:
    """Return the take's resume when a task may be adopted for it; refuse it otherwise."""
    resume = assessment.resume.get(unit)
    if resume is None:
        raise AdoptRefusedError(f"{unit}: the shot has no such take; nothing to adopt")
    if resume.kind in ADOPTABLE:
        return resume
    attempt = resume.attempt
    task = None if attempt is None else attempt.task_id
    match resume.kind:
        case "cached":
            why = f"its video is on disk (task {task}); --rerender renders it anew"
        case "poll" | "refetch":
            why = f"it has task {task} already: the next run fetches its video"
        case _:
            why = "it takes over the render of another shot with the same inputs"
    raise AdoptRefusedError(f"{unit} has its task: {why}; nothing to adopt")


def _plan_units(shotlist: ShotList, assessment: Assessment) -> tuple[PlannedTake, ...]:
    return plan(shotlist, statuses=assessment.statuses, picks=assessment.picks).units
