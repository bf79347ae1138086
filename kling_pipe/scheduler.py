"""The async shell around `engine`: turns its decisions into uploads, submits, polls, downloads.

The only code in kling-pipe that awaits on the backend. One asyncio task per shot attempt,
all inside one `TaskGroup`; each feeds its outcome back to `engine.decide`, which says what
starts next. Money rules enforced here, beyond the engine's budget:

* a submit is sent only with its cost reserved; one whose outcome is unknown is never sent
  again blindly: the prediction history is searched first (`_reconcile`), and only a search
  that finds nothing lets it be sent again;
* one submit is on the wire at a time, and none while a lost one is unsettled or a search
  runs, so a task found in the history can belong to one lost submit only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import attrs

from kling_pipe import media, rules
from kling_pipe.backend import Backend, Prediction, SubmitRequest, list_all_predictions
from kling_pipe.engine import (
    Admission,
    CancelRunning,
    Event,
    RunFinished,
    RunStarted,
    ShotEnded,
    SkipShot,
    StartShot,
    StopRequested,
    decide,
)
from kling_pipe.exceptions import (
    AuthError,
    BackendError,
    KlingPipeError,
    NotFoundError,
    RateLimitedError,
    SubmitOutcomeUnknown,
)
from kling_pipe.pacing import DurationEstimator, PollPolicy, RateLimiter, next_poll_delay
from kling_pipe.plan import Plan
from kling_pipe.results import RunResult, ShotResult, ShotState
from kling_pipe.resume import Resume
from kling_pipe.specs import ChainImage, ImageRef, LocalImage, Shot, ShotList, UrlImage
from kling_pipe.store import Store

log = logging.getLogger("kling_pipe")

#: A rendered video may differ from the asked duration by this much before it is reported.
DURATION_TOLERANCE_S = 0.5


@attrs.frozen(kw_only=True)
class RunOptions:
    """How a run behaves; the CLI flags map onto these one to one."""

    concurrency: int = 4
    max_cost: Decimal | None = None
    #: Submits per minute at most (an account tier's limit), or None for no limit.
    rate_per_min: int | None = None
    #: How many times a task that failed on the server is resubmitted.
    retry_failed: int = 0
    fail_fast: bool = False
    #: Longest wait for one task from submit to final status.
    task_timeout_s: float = 3600.0
    poll_policy: PollPolicy = attrs.Factory(PollPolicy)
    #: Expected seconds per task before any task of this run completes (None: probe).
    expected_task_s: float | None = None
    #: How many times the history is searched for a submit whose answer was lost.
    reconcile_attempts: int = 3
    #: Pause between those searches (the history may lag behind a new task).
    reconcile_pause_s: float = 1.0
    #: Allowed difference between our clock and the server's when matching creation times.
    clock_skew: timedelta = timedelta(minutes=2)
    #: Submits sent again after a history search showed the task was never created. Each is
    #: safe (nothing was charged), so the cap only stops a connection that always breaks.
    max_unknown_resends: int = 6


@attrs.frozen(kw_only=True)
class Records:
    """Where a run records what it does, and what earlier runs left to continue."""

    store: Store
    #: What each shot needs, from `resume.assess`.
    resume: Mapping[str, Resume]
    inputs: Mapping[str, Mapping[str, Any]]
    #: The API base URL: an upload is reused only with the server it was made to.
    origin: str


class Reporter(Protocol):
    """Where progress goes: a live table, plain log lines, or nowhere."""

    def shot_changed(self, result: ShotResult, detail: str = "") -> None:
        """Show that a shot moved to `result.state`; *detail* says more (a task id, an error)."""

    def spent_changed(self, spent: Decimal) -> None:
        """Show the money committed so far."""


class _ShotFailedError(KlingPipeError):
    """Ends one attempt; carries how the engine should account for it."""

    def __init__(  # noqa: PLR0913 - keyword-only accounting flags
        self,
        message: str,
        *,
        charged: bool,
        retryable: bool = False,
        fatal: bool = False,
        code: int | None = None,
        state: ShotState = "failed",
    ) -> None:
        self.charged = charged
        self.retryable = retryable
        self.fatal = fatal
        self.code = code
        self.state: ShotState = state
        super().__init__(message)


class Scheduler:
    """Renders the shots of one plan through one backend; use once."""

    def __init__(  # noqa: PLR0913 - the run's whole context, keyword-only
        self,
        shotlist: ShotList,
        plan: Plan,
        backend: Backend,
        *,
        options: RunOptions,
        reporter: Reporter,
        records: Records | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._shotlist = shotlist
        self._plan = plan
        self._backend = backend
        self._options = options
        self._reporter = reporter
        self._clock = clock
        self._sleep = sleep
        self._admission = Admission(
            plan=plan,
            concurrency=options.concurrency,
            max_cost=options.max_cost,
            retry_failed=options.retry_failed,
            fail_fast=options.fail_fast,
        )
        self._results = {
            p.id: ShotResult(id=p.id, duration=p.shot.duration, state="queued") for p in plan.shots
        }
        for p in plan.shots:
            if p.status == "cached":
                self._results[p.id].state = "cached"
            elif p.status == "uncertain":
                self._results[p.id].state = "uncertain"
        if records is not None:
            self._fill_from_records(records)
        self._output_dir = shotlist.output_path
        self._estimator = DurationEstimator(prior_s=options.expected_task_s)
        self._limiter = (
            RateLimiter(max_events=options.rate_per_min) if options.rate_per_min else None
        )
        self._uploads: dict[str, asyncio.Future[str]] = {}
        self._records = records
        self._store = None if records is None else records.store
        self._known_task_ids: set[str] = (
            set() if self._store is None else self._store.known_task_ids()
        )
        self._submits_in_flight = 0
        #: Lost submits not yet settled through the history; none is sent meanwhile.
        self._lost = 0
        self._reconciling = False
        self._submit_gate = asyncio.Condition()
        self._reconcile_lock = asyncio.Lock()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._interrupted = False

    def _fill_from_records(self, records: Records) -> None:
        """Give cached and uncertain shots what the records know of them."""
        for shot_id, resume in records.resume.items():
            result, attempt = self._results[shot_id], resume.attempt
            if attempt is None or result.state not in ("cached", "uncertain"):
                continue
            result.task_id = attempt.task_id
            result.error = resume.reason if result.state == "uncertain" else ""
            if attempt.file is not None:
                result.file = self._shotlist.base_dir / attempt.file
            result.sha256, result.bytes = attempt.sha256, attempt.bytes

    @property
    def results(self) -> dict[str, ShotResult]:
        """Every shot's result so far, by id (live while the run goes on)."""
        return self._results

    def request_stop(self) -> None:
        """Stop starting shots and cancel running ones (the first Ctrl-C)."""
        self._interrupted = True
        self._apply(StopRequested())

    async def run(self) -> RunResult:
        """Render every shot the plan renders and return what happened."""
        started = self._clock()
        self._output_dir.mkdir(parents=True, exist_ok=True)
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._apply(RunStarted())
            await self._finished.wait()
        return RunResult(
            storyboard=self._plan.storyboard,
            output_dir=self._output_dir,
            shots=tuple(self._results[p.id] for p in self._plan.shots),
            wall_s=self._clock() - started,
            interrupted=self._interrupted,
        )

    # The engine loop.

    def _apply(self, event: Event) -> None:
        for action in decide(self._admission, event):
            match action:
                case StartShot(shot_id=sid, attempt=attempt):
                    assert self._group is not None
                    task = self._group.create_task(self._attempt(sid, attempt), name=sid)
                    self._running[sid] = task
                case SkipShot(shot_id=sid, reason=reason):
                    self._set(sid, "skipped", reason)
                    self._results[sid].error = reason
                case CancelRunning():
                    for task in self._running.values():
                        task.cancel()
                case RunFinished():
                    self._finished.set()
        self._reporter.spent_changed(self._admission.committed)

    async def _attempt(self, shot_id: str, attempt: int) -> None:
        result = self._results[shot_id]
        result.attempts = attempt
        result.error, result.code = "", None
        shot = self._shotlist.shot(shot_id)
        started = self._clock()
        unit_cost = self._admission.reserved[shot_id]
        event: ShotEnded
        try:
            await self._render(shot, result)
        except _ShotFailedError as failure:
            result.error, result.code = str(failure), failure.code
            if failure.charged:
                result.cost += unit_cost
            event = ShotEnded(
                shot_id=shot_id,
                outcome="uncertain" if failure.state == "uncertain" else "failed",
                charged=failure.charged,
                retryable=failure.retryable,
                fatal=failure.fatal,
            )
            self._set(shot_id, failure.state, str(failure))
        except asyncio.CancelledError:
            # Our own cancellation after Ctrl-C: record it and let the run finish cleanly.
            charged = result.task_id is not None and result.state != "done"
            if charged:
                result.cost += unit_cost
            detail = f"task {result.task_id} may still be rendering" if charged else ""
            result.error = "cancelled" + (f"; {detail}" if detail else "")
            event = ShotEnded(shot_id=shot_id, outcome="cancelled", charged=charged)
            self._set(shot_id, "cancelled", detail)
        else:
            result.cost += unit_cost
            event = ShotEnded(shot_id=shot_id, outcome="done", charged=True)
            self._set(shot_id, "done", str(result.file))
        finally:
            result.seconds += self._clock() - started
            self._running.pop(shot_id, None)
        self._apply(event)

    def _set(self, shot_id: str, state: ShotState, detail: str = "") -> None:
        result = self._results[shot_id]
        result.state = state
        self._reporter.shot_changed(result, detail)

    # One shot, start to finish.

    async def _render(self, shot: Shot, result: ShotResult) -> None:
        resume = None
        if self._records is not None and result.attempts == 1:
            resume = self._records.resume.get(shot.id)
        prediction, attempt_id = await self._continue(shot, resume)
        if prediction is None:
            prediction, attempt_id = await self._start_task(shot)
        result.task_id = prediction.id
        if prediction.id not in result.task_ids:
            result.task_ids.append(prediction.id)
        self._set(shot.id, "processing", f"task {prediction.id}")
        try:
            final = await self._wait(prediction, result)
        finally:
            if self._store is not None and attempt_id is not None:
                self._store.record_polls(attempt_id, result.polls)
        if self._store is not None and attempt_id is not None:
            self._store.record_final(
                attempt_id,
                completed=final.succeeded,
                error="" if final.succeeded else final.failure_reason,
                code=final.code,
            )
        if not final.succeeded:
            # WaveSpeed refunds a failed task, so a new attempt may be worth paying for.
            raise _ShotFailedError(
                final.failure_reason, charged=False, retryable=True, code=final.code
            )
        self._set(shot.id, "downloading")
        await self._download(shot, final.outputs[0], result)
        if self._store is not None and attempt_id is not None:
            assert result.file is not None
            assert result.sha256 is not None
            assert result.bytes is not None
            self._store.record_download(
                attempt_id,
                file=relative_to_shotlist(result.file, self._shotlist),
                sha256=result.sha256,
                size=result.bytes,
            )

    async def _continue(
        self, shot: Shot, resume: Resume | None
    ) -> tuple[Prediction | None, int | None]:
        """Pick up a task an earlier run created; (None, None) when there is none to continue."""
        if resume is None or resume.attempt is None:
            return None, None
        attempt = resume.attempt
        if resume.kind in ("poll", "refetch") and attempt.task_id is not None:
            self._set(shot.id, "processing", f"resuming task {attempt.task_id}")
            return await self._fetch(attempt.task_id, shot.id), attempt.id
        if resume.kind == "reconcile":
            assert self._store is not None
            self._set(shot.id, "submitting", "looking for a lost submit in the history")
            try:
                found = await self._reconcile(attempt.model, attempt.sent_at)
            except _ShotFailedError as failure:
                self._store.record_uncertain(attempt.id, str(failure))
                raise
            if found is not None:
                self._store.record_task(attempt.id, found.id)
                return found, attempt.id
            self._store.record_refused(attempt.id, "not in the prediction history: never created")
        return None, None

    async def _fetch(self, task_id: str, shot_id: str) -> Prediction:
        try:
            return await self._backend.get_prediction(task_id)
        except NotFoundError:
            raise _ShotFailedError(
                f"task {task_id} from an earlier run is unknown to the server (expired or "
                f"deleted); run again with --rerender {shot_id} to render it anew (costs money)",
                charged=False,
            ) from None
        except AuthError as exc:
            raise _ShotFailedError(str(exc), charged=False, fatal=True) from None
        except BackendError as exc:
            raise _ShotFailedError(
                f"task {task_id} could not be looked up: {exc}", charged=False
            ) from None

    async def _start_task(self, shot: Shot) -> tuple[Prediction, int | None]:
        self._set(shot.id, "uploading")
        try:
            image_url = await self._input_url(shot.image)
            last_url = None if shot.last_image is None else await self._input_url(shot.last_image)
        except AuthError as exc:
            raise _ShotFailedError(str(exc), charged=False, fatal=True) from None
        except (BackendError, OSError) as exc:
            raise _ShotFailedError(
                f"preparing the input images failed: {exc}", charged=False
            ) from None
        request = SubmitRequest(
            model=self._plan.model,
            prompt=shot.final_prompt,
            image_url=image_url,
            last_image_url=last_url,
            duration=shot.duration,
        )
        self._set(shot.id, "submitting")
        return await self._submit(shot, request)

    async def _input_url(self, image: ImageRef) -> str:
        match image:
            case UrlImage(url=url):
                return url
            case LocalImage():
                return await self._upload(self._shotlist.resolve(image))
            case ChainImage(shot=source, frame=frame):
                video = self._results[source].file
                if video is None:  # the engine starts a chained shot only after its source
                    raise _ShotFailedError(f"shot {source!r} has no video", charged=False)
                png = self._output_dir / "frames" / f"{source}.{frame}.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(media.extract_frame, video, frame, png)
                return await self._upload(png)

    async def _upload(self, path: Path) -> str:
        """Upload a file once per content hash per run, however many shots use it."""
        digest, size = await asyncio.to_thread(_hash_and_size, path)
        if self._records is not None:
            known = self._records.store.upload_url(
                digest, self._records.origin, now=datetime.now(UTC)
            )
            if known is not None:
                return known
        pending = self._uploads.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._uploads[digest] = future
        try:
            url = await self._backend.upload_image(path)
        except BaseException as exc:
            del self._uploads[digest]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved here; shots waiting on it get it too
            else:
                future.cancel()
            raise
        future.set_result(url)
        if self._records is not None:
            self._records.store.record_upload(digest, self._records.origin, url, size)
        return url

    # Submitting, never twice.

    async def _submit(self, shot: Shot, request: SubmitRequest) -> tuple[Prediction, int | None]:
        resends = 0
        while True:
            await self._wait_for_rate_slot()
            attempt_id = self._record_intent(shot)
            try:
                prediction = await self._send_submit(request)
            except SubmitOutcomeUnknown as unknown:
                found = await self._settle_unknown(attempt_id, unknown)
                if found is not None:
                    return found, attempt_id
                resends += 1
                if resends > self._options.max_unknown_resends:
                    raise _ShotFailedError(
                        "the submit's answer was lost repeatedly; giving up without resending",
                        charged=False,
                    ) from None
                log.info("history shows the lost submit created no task; sending it again")
                continue
            except AuthError as exc:
                self._record_refused(attempt_id, str(exc))
                raise _ShotFailedError(str(exc), charged=False, fatal=True) from None
            except BackendError as exc:
                # An explicit refusal (400, or 429/5xx after the client's retries): no task.
                self._record_refused(attempt_id, str(exc))
                raise _ShotFailedError(f"submit refused: {exc}", charged=False) from None
            # Durably, before anything else: from now on this task is never submitted again.
            if self._store is not None and attempt_id is not None:
                self._store.record_task(attempt_id, prediction.id)
            self._known_task_ids.add(prediction.id)
            return prediction, attempt_id

    def _record_intent(self, shot: Shot) -> int | None:
        if self._records is None or self._store is None:
            return None
        resume = self._records.resume[shot.id]
        return self._store.record_intent(
            shot_id=shot.id,
            fingerprint=resume.fingerprint,
            inputs=json.dumps(self._records.inputs[shot.id], sort_keys=True),
            model=self._plan.model,
            duration=shot.duration,
            cost=self._admission.cost(shot.id) or rules.shot_cost(self._plan.model, shot.duration),
            sent_at=datetime.now(UTC),
        )

    def _record_refused(self, attempt_id: int | None, error: str) -> None:
        if self._store is not None and attempt_id is not None:
            self._store.record_refused(attempt_id, error)

    async def _settle_unknown(
        self, attempt_id: int | None, unknown: SubmitOutcomeUnknown
    ) -> Prediction | None:
        try:
            try:
                found = await self._reconcile(unknown.model, unknown.sent_at)
            except _ShotFailedError as failure:
                if self._store is not None and attempt_id is not None:
                    self._store.record_uncertain(attempt_id, str(failure))
                raise
            if self._store is not None and attempt_id is not None:
                if found is None:
                    self._store.record_refused(attempt_id, "not in the prediction history")
                else:
                    self._store.record_task(attempt_id, found.id)
            return found
        finally:
            # Settled (or given up as uncertain): other submits may go on the wire again.
            async with self._submit_gate:
                self._lost -= 1
                self._submit_gate.notify_all()

    async def _wait_for_rate_slot(self) -> None:
        if self._limiter is not None:
            delay = self._limiter.reserve(self._clock())
            if delay > 0:
                await self._sleep(delay)

    async def _send_submit(self, request: SubmitRequest) -> Prediction:
        """Send one submit: never two at once, never while a lost one is unsettled.

        A task found in the history can then belong to one lost submit only. With two on the
        wire, one lost before the server acted and one after, the first to search would adopt
        the other's task (the wrong video) and the other would be sent again (paid twice).
        Submits are one round trip each; tasks take minutes, so this costs little.
        """
        async with self._submit_gate:
            await self._submit_gate.wait_for(
                lambda: not self._reconciling and self._submits_in_flight == 0 and not self._lost
            )
            self._submits_in_flight += 1
        lost = False
        try:
            return await self._backend.submit(request)
        except SubmitOutcomeUnknown:
            lost = True
            raise
        finally:
            async with self._submit_gate:
                self._submits_in_flight -= 1
                self._lost += lost
                self._submit_gate.notify_all()

    async def _reconcile(self, model: str, sent_at: datetime) -> Prediction | None:
        """Find the task a lost submit created; None when the history shows there is none.

        Raises `_ShotFailedError` (state uncertain) when the history cannot tell: several
        unclaimed tasks could be ours, or the history itself cannot be read.
        """
        async with self._reconcile_lock:
            async with self._submit_gate:
                self._reconciling = True
                await self._submit_gate.wait_for(lambda: self._submits_in_flight == 0)
            try:
                return await self._search_history(model, sent_at)
            finally:
                async with self._submit_gate:
                    self._reconciling = False
                    self._submit_gate.notify_all()

    async def _search_history(self, model: str, sent_at: datetime) -> Prediction | None:
        since = sent_at - self._options.clock_skew
        for attempt in range(self._options.reconcile_attempts):
            if attempt:
                await self._sleep(self._options.reconcile_pause_s)
            try:
                history = await list_all_predictions(
                    self._backend, model=model, created_after=since
                )
            except BackendError as exc:
                raise _ShotFailedError(
                    f"the submit's answer was lost and the history could not be read ({exc}); "
                    "the task may exist: check it, or run again with --resubmit-uncertain",
                    charged=True,
                    state="uncertain",
                ) from None
            candidates = [
                p for p in history if p.id not in self._known_task_ids and p.created_at >= since
            ]
            if len(candidates) == 1:
                log.info("found the lost submit's task %s in the history", candidates[0].id)
                self._known_task_ids.add(candidates[0].id)
                return candidates[0]
            if len(candidates) > 1:
                ids = ", ".join(sorted(p.id for p in candidates))
                raise _ShotFailedError(
                    f"the submit's answer was lost and {len(candidates)} unclaimed tasks could "
                    f"be it ({ids}); not resubmitting",
                    charged=True,
                    state="uncertain",
                )
        return None

    # Waiting for the task, cheaply.

    async def _wait(self, prediction: Prediction, result: ShotResult) -> Prediction:
        submitted = self._clock()
        last_pending: float | None = None
        retry_after: float | None = None
        unknown_statuses = 0
        try:
            async with asyncio.timeout(self._options.task_timeout_s):
                while not prediction.is_final:
                    delay = next_poll_delay(
                        now=self._clock(),
                        submitted_at=submitted,
                        polls=result.polls,
                        estimate=self._estimator.estimate(),
                        policy=self._options.poll_policy,
                        retry_after_s=retry_after,
                    )
                    await self._sleep(delay)
                    retry_after = None
                    try:
                        polled = await self._backend.get_prediction(prediction.id)
                    except RateLimitedError as exc:
                        retry_after = exc.retry_after_s
                        continue
                    except NotFoundError:
                        raise _ShotFailedError(
                            f"task {prediction.id} is unknown to the server", charged=True
                        ) from None
                    except AuthError as exc:
                        raise _ShotFailedError(str(exc), charged=True, fatal=True) from None
                    except BackendError as exc:
                        log.warning("polling task %s failed: %s", prediction.id, exc)
                        continue
                    finally:
                        result.polls += 1
                    prediction = polled
                    if prediction.is_unknown_status:
                        unknown_statuses += 1
                        log.warning(
                            "task %s has unknown status %r", prediction.id, prediction.status
                        )
                    elif prediction.is_pending:
                        last_pending = self._clock() - submitted
        except TimeoutError:
            raise _ShotFailedError(
                f"task {prediction.id} did not finish within {self._options.task_timeout_s:g} s "
                f"(last status {prediction.status!r}); it may still complete and be charged",
                charged=True,
            ) from None
        if prediction.status == "completed":
            inference = None if prediction.inference_ms is None else prediction.inference_ms / 1000
            self._estimator.record(
                done_elapsed_s=self._clock() - submitted,
                pending_elapsed_s=last_pending,
                inference_s=inference,
            )
        return prediction

    async def _download(self, shot: Shot, url: str, result: ShotResult) -> None:
        dest = self._output_dir / f"{shot.id}.mp4"
        try:
            download = await self._backend.download(url, dest)
            seconds = await asyncio.to_thread(media.probe_duration_s, download.path)
        except (BackendError, OSError, KlingPipeError) as exc:
            raise _ShotFailedError(
                f"task {result.task_id} completed but its video could not be downloaded: {exc}",
                charged=True,
            ) from None
        result.file, result.sha256, result.bytes = download.path, download.sha256, download.size
        if abs(seconds - shot.duration) > DURATION_TOLERANCE_S:
            result.warnings.append(
                f"the video lasts {seconds:.2f} s; the shot asked for {shot.duration} s"
            )


def _hash_and_size(path: Path) -> tuple[str, int]:
    return media.sha256_file(path), path.stat().st_size


def relative_to_shotlist(path: Path, shotlist: ShotList) -> str:
    """Write *path* relative to the shot list's folder, as the store and lock file keep it."""
    try:
        return str(path.relative_to(shotlist.base_dir))
    except ValueError:
        return os.path.relpath(path, shotlist.base_dir)
