"""The submit protocol: how a shot's task is created at most once, and never taken from another.

A submit is the only request that costs money, and its answer can be lost: the connection
breaks after the request left, the answer times out, or a gateway answers 502/503/504 after
the API acted. The task may then exist, and the only way to find it is WaveSpeed's history,
which lists every task of the account (other storyboards, teammates, the web playground),
carries no `input`, lags behind creation, and stamps `created_at` with the server's clock.
This unit owns everything between "this shot needs a task" and "this is the shot's task".

States of one submit, and what is durable before each request
---------------------------------------------------------------

1. **waiting** for its turn: nothing is written. Two things gate the turn: the rate limit,
   and its first frame. No submit goes on the wire while another whose first frame the
   proof could confuse with its own (`Prover.indistinct`) is on the wire or lost and
   unsettled, nor while an intent an earlier run left with such a frame is unsettled.
2. **intent**: written (committed, fsynced) only once the submit owns its turn, immediately
   before the request: shot, fingerprint, inputs, price, our send time and the server's clock
   offset as known then. An intent without a task id is a submit whose outcome is unknown.
3. **submitted**: the answer's task id is committed to the store and claimed in the user-level
   `Registry` before anything else happens. From here the task is only ever polled.
   A **refused** submit (400/401/403/429, or WaveSpeed's own error envelope) created nothing
   and is recorded so; it may be sent again where the error is transient.
4. **lost** (the intent stays as it was) and **settling**: the window in which the server can
   have created the task is bounded in the *server's* clock: from our send time (plus the
   offset learned from its ``Date`` headers) minus `SettleOptions.slack`, to that plus
   `act_window`, the longest the API may take to act. The history is read until that window
   has closed and the history's lag (`history_lag`) has passed. *Candidates* are tasks of the
   model created inside the window that no kling-pipe record on this machine owns (neither
   this store nor the registry), excluding failed tasks (refunded, so never worth adopting).
   A candidate becomes the shot's task only when **its output proves it**: the video's first
   frame matches the shot's first image, and its last frame the `last_image` when one is set
   (`kling_pipe._decisions.proof`). A proved candidate is claimed atomically in the registry,
   recorded as the attempt's task, and the submit is over. A candidate whose proof fails is never
   adopted. When the window has closed and no candidate is pending:
   - none could be ours (no candidates, or every one proved not to be): the intent is
     recorded **refused** and the submit is sent again (a new intent);
   - some candidate could not be decided (its video is not like either image, its output
     cannot be fetched, the shot's image is a URL we cannot compare): the attempt is
     recorded **uncertain** with the candidates' ids; nothing is resent unless the user asks
     (``--resubmit-uncertain``).

Why no schedule of faults, kills and other clients pays twice or takes a foreign task
------------------------------------------------------------------------------------

* Every request that may create a task is preceded by a committed intent, so a kill at any
  point leaves either a task id (polled on resume, never resubmitted) or an intent (settled
  on resume by exactly the procedure above, never resent blindly).
* A submit is sent again only after the history, read after the window closed, shows no task
  that can be its own. The window is closed in the server's clock, so a skewed client clock
  cannot close it early, and only a read started after it closed, on a known server clock,
  concludes; `act_window` covers a server that creates the task late and `history_lag` a
  history that shows it late.
* A task is adopted only if its own output shows the shot's frames, and only if no other
  kling-pipe record claims it (the claim is one atomic insert, so two storyboards on one
  machine cannot both adopt it). Two submits whose first frames the proof cannot tell
  apart are never active together (a shot without `last_image` is proved on its first frame
  alone), and an earlier run's intents hold their turn from the start of the next run.
* What remains is stated in the README: a task made elsewhere on the account (a teammate, the
  playground) from the *same* first and last images inside the window is indistinguishable
  from ours by any public fact; if exactly one such task exists and ours does not, it is
  adopted. When several candidates prove, the shot is `uncertain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from kling_pipe._backends.base import (
    ACT_WINDOW,
    HISTORY_LAG,
    Backend,
    Prediction,
    SubmitRequest,
    list_all_predictions,
)
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._records.registry import Registry
from kling_pipe._records.store import Store
from kling_pipe.exceptions import AuthError, BackendError, KlingPipeError, SubmitOutcomeUnknown

if TYPE_CHECKING:
    from kling_pipe._decisions import proof

log = logging.getLogger("kling_pipe")

Verdict = Literal["match", "mismatch", "undecided"]

#: The identities of a shot's first and last frames (a file's sha256, or a URL).
ProofKey = tuple[str, str | None]


@attrs.frozen(kw_only=True)
class SettleOptions:
    """How long a lost answer is given before the history can say the task does not exist.

    The defaults are generous: a lost answer is rare, it delays only its own shot (others
    keep being submitted), and a task proved to be the shot's is adopted as soon as it is
    seen. Only a resend waits for the whole window.
    """

    #: The longest the API may take to create a task after the request reached it (we count
    #: from the moment we gave up on the answer): a server that acts late, several times
    #: over our own answer time-out.
    act_window: timedelta = ACT_WINDOW
    #: The client's answer time-out: a request recorded by a run that was killed ended by
    #: its send time plus this (`kling_pipe._backends.wavespeed.client.Timeouts.api_total_s`).
    answer_timeout: timedelta = timedelta(seconds=60)
    #: How long a new task may take to appear in the history after its creation.
    history_lag: timedelta = HISTORY_LAG
    #: Error allowed in our estimate of the server's clock (``Date`` has whole seconds).
    slack: timedelta = timedelta(seconds=5)
    #: Pause between two readings of the history while settling.
    poll_s: float = 5.0
    #: How long after the window closed a candidate may stay pending before the shot is
    #: left uncertain rather than waited for.
    pending_limit: timedelta = timedelta(hours=1)
    #: Submits sent again after the history showed that the lost one created nothing.
    max_resends: int = 6


@attrs.frozen(kw_only=True)
class Subject:
    """The shot a submit is for: what is recorded, and what proves a candidate to be its."""

    shot_id: str
    #: Who owns its tasks in the registry: ``<shot list path>#<shot id>``.
    owner: str
    fingerprint: str
    #: The fingerprinted inputs, as JSON.
    inputs: str
    model: str
    duration: int
    cost: Decimal
    key: ProofKey
    #: The first frame as a local file, for the proof; None when it cannot be had (a URL).
    first: Path | None
    #: The last frame as a local file, if the shot has a `last_image` (see `has_last`).
    last: Path | None = None
    has_last: bool = False


class SubmitFailedError(KlingPipeError):
    """The submit did not give the shot a task; `state` says whether one may exist."""

    def __init__(
        self,
        message: str,
        *,
        state: Literal["failed", "uncertain"] = "failed",
        fatal: bool = False,
        candidates: tuple[str, ...] = (),
    ) -> None:
        self.state: Literal["failed", "uncertain"] = state
        self.fatal = fatal
        self.candidates = candidates
        super().__init__(message)

    @property
    def charged(self) -> bool:
        """Whether a task may exist (and cost money)."""
        return self.state == "uncertain"


class Prover(Protocol):
    """Says whether a completed candidate's output shows the subject's frames."""

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

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pictures: dict[Path, asyncio.Future[proof.Picture | None]] = {}
        self._alike: dict[frozenset[str], bool] = {}

    async def indistinct(self, one: Subject, other: Subject) -> bool:
        """See `Prover.indistinct`: same file, or pictures the proof does not call different.

        A URL image cannot be compared: such a shot's candidates are never proved (they are
        undecided), so it cannot take another's task and is kept apart by its URL only.
        """
        if one.key[0] == other.key[0]:
            return True
        if one.first is None or other.first is None:
            return False
        pair = frozenset((one.key[0], other.key[0]))
        known = self._alike.get(pair)
        if known is None:
            from kling_pipe._decisions import proof  # noqa: PLC0415 - decoding libraries load when needed

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

        if subject.first is None or (subject.has_last and subject.last is None):
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
        first = await self._picture(subject.first)
        last = None if subject.last is None else await self._picture(subject.last)
        if first is None or (subject.last is not None and last is None):
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


@attrs.define
class _Settling:
    """What one settling has learned so far (per candidate: its verdict)."""

    verdicts: dict[str, Verdict] = attrs.Factory(dict)
    pending: set[str] = attrs.Factory(set)
    read_failed: str = ""


class SubmitProtocol:
    """Creates each shot's task at most once; see the module docstring for the argument."""

    def __init__(  # noqa: PLR0913 - the protocol's whole context, keyword-only
        self,
        *,
        backend: Backend,
        store: Store,
        registry: Registry,
        origin: str,
        options: SettleOptions,
        prover: Prover,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        before_send: Callable[[str], Awaitable[None]] | None = None,
        on_wait: Callable[[str, str], None] | None = None,
        on_task: Callable[[str, str], None] | None = None,
    ) -> None:
        self._backend = backend
        self._store = store
        self._registry = registry
        self._origin = origin
        self._options = options
        self._prover = prover
        self._now = now
        self._sleep = sleep
        self._before_send = before_send
        self._on_wait = on_wait or (lambda _shot, _what: None)
        self._on_task = on_task or (lambda _shot, _task: None)
        #: Submits on the wire or lost and unsettled, and a counter of changes to that set.
        self._active: dict[int, Subject] = {}
        #: Turns held for intents of earlier runs, by attempt id (see `reserve`).
        self._reserved: dict[int, object] = {}
        self._version = 0
        self._released = asyncio.Event()

    # The two ways in.

    async def submit(self, subject: Subject, request: SubmitRequest) -> tuple[Prediction, int]:
        """Create the shot's task; return it with its attempt id, or raise SubmitFailedError."""
        async with self._turn(subject):
            resends = 0
            while True:
                if self._before_send is not None:
                    await self._before_send(subject.shot_id)
                sent_at, offset = self._now(), self._backend.clock_offset
                attempt_id = self._store.record_intent(
                    shot_id=subject.shot_id,
                    fingerprint=subject.fingerprint,
                    inputs=subject.inputs,
                    model=subject.model,
                    duration=subject.duration,
                    cost=subject.cost,
                    sent_at=sent_at,
                    origin=self._origin,
                    clock_offset=offset,
                )
                try:
                    prediction = await self._send(subject, request, attempt_id)
                except SubmitOutcomeUnknown as unknown:
                    log.warning("shot %s: %s", subject.shot_id, unknown)
                    found = await self._settle(
                        subject, attempt_id, sent_at, offset, gave_up_at=self._now()
                    )
                    if found is not None:
                        return found, attempt_id
                    resends += 1
                    if resends > self._options.max_resends:
                        raise SubmitFailedError(
                            "the submit's answer was lost "
                            f"{resends} times; giving up (the history showed no task each time)"
                        ) from None
                    log.info(
                        "shot %s: the lost submit created no task; sending it again",
                        subject.shot_id,
                    )
                    continue
                except AuthError as exc:
                    self._store.record_refused(attempt_id, str(exc))
                    raise SubmitFailedError(str(exc), fatal=True) from None
                except BackendError as exc:
                    self._store.record_refused(attempt_id, str(exc))
                    raise SubmitFailedError(f"submit refused: {exc}") from None
                return prediction, attempt_id

    async def settle_recorded(self, subject: Subject, attempt: Attempt) -> Prediction | None:
        """Settle an intent an earlier run left without a task id (it was killed meanwhile).

        Returns the proved task, or None when the history shows the submit created nothing
        (the attempt is then recorded refused and the caller submits anew); raises
        SubmitFailedError (uncertain) when it cannot tell.
        """
        token = self._reserved.pop(attempt.id, None)
        async with self._turn(subject, token):
            # The request ended (answered, lost or killed) by its answer time-out at the latest.
            gave_up_at = attempt.sent_at + self._options.answer_timeout
            return await self._settle(
                subject, attempt.id, attempt.sent_at, attempt.clock_offset, gave_up_at=gave_up_at
            )

    def reserve(self, subject: Subject, attempt: Attempt) -> None:
        """Hold the turn for an intent an earlier run left unsettled, before anything starts.

        Until it is settled, no new submit whose task its proof could take may go on the
        wire: otherwise a new submit of a shot with a like first frame, lost in turn, would
        find the old intent's task in the history and could take it.
        """
        token = object()
        self._active[id(token)] = subject
        self._reserved[attempt.id] = token
        self._version += 1

    def release(self, attempt: Attempt | None) -> None:
        """Release the turn reserved for *attempt* if nothing settled it (its shot ended)."""
        token = None if attempt is None else self._reserved.pop(attempt.id, None)
        if token is not None:
            self._active.pop(id(token), None)
            self._notify()

    def release_reserved(self) -> None:
        """Release the turns reserved for intents no attempt settled (the run was stopped)."""
        for token in self._reserved.values():
            self._active.pop(id(token), None)
        self._reserved.clear()
        self._notify()

    def _notify(self) -> None:
        self._version += 1
        self._released.set()
        self._released = asyncio.Event()

    # The turn: one submit per proof key on the wire or unsettled.

    @contextlib.asynccontextmanager
    async def _turn(self, subject: Subject, token: object | None = None) -> AsyncIterator[None]:
        """Wait until no submit the proof could confuse with this one is active; hold it.

        Active means on the wire or lost and unsettled. Confusable means the prover cannot
        tell their first frames apart (the same file, the same picture saved twice, a chain
        from another shot's first frame): the first frame alone proves a shot that has no
        `last_image`, so the last frames do not help.
        """
        while token is None:
            version = self._version
            blockers = [
                other
                for other in list(self._active.values())
                if await self._prover.indistinct(subject, other)
            ]
            if version != self._version:
                continue  # the active set changed while we compared: look again
            if not blockers:
                break
            self._on_wait(
                subject.shot_id,
                f"waiting: shot {blockers[0].shot_id} has a first frame like this one's and "
                "its submit is not settled yet",
            )
            await self._released.wait()
        if token is None:
            token = object()
            self._active[id(token)] = subject
            self._version += 1
        try:
            yield
        finally:
            self._active.pop(id(token), None)
            self._notify()

    async def _send(self, subject: Subject, request: SubmitRequest, attempt_id: int) -> Prediction:
        """Send one submit; record its task before anything else, even when cancelled.

        The request runs in a task of its own, shielded: a Ctrl-C while it is on the wire
        waits for its answer, so the summary and the store name the task it created.
        """
        sending = asyncio.ensure_future(self._backend.submit(request))
        try:
            prediction = await asyncio.shield(sending)
        except asyncio.CancelledError:
            await asyncio.wait({sending})
            if not sending.cancelled() and sending.exception() is None:
                self._own(subject, attempt_id, sending.result().id)
            raise
        self._own(subject, attempt_id, prediction.id)
        return prediction

    def _own(self, subject: Subject, attempt_id: int, task_id: str) -> None:
        """Durably, first: the task is this attempt's, and no other record may take it."""
        self._store.record_task(attempt_id, task_id)
        if not self._registry.claim(task_id, owner=subject.owner, origin=self._origin):
            log.warning(
                "task %s was answered to shot %s but the registry gives it to %s",
                task_id,
                subject.shot_id,
                self._registry.owner(task_id),
            )
        self._on_task(subject.shot_id, task_id)

    # Settling a lost answer.

    async def _settle(
        self,
        subject: Subject,
        attempt_id: int,
        sent_at: datetime,
        offset_at_send: timedelta | None,
        *,
        gave_up_at: datetime,
    ) -> Prediction | None:
        """Find the lost submit's task by proof, or show that it cannot exist (see module doc).

        The request reached the server between *sent_at* and *gave_up_at* (our clock), so
        the task, if any, was created between those plus the server's clock offset, widened
        by the slack before and the act window after.
        """
        state = _Settling()
        opts = self._options
        while True:
            offset = self._offset(offset_at_send)
            start = sent_at + offset - opts.slack
            end = max(sent_at, gave_up_at) + offset + opts.act_window
            closes = end + opts.history_lag
            # Taken before the read: only a read *started* after the window closed can show
            # that no task exists, and only on a known server clock (a resumed run's first
            # read is often the one that teaches it; until then nothing is concluded).
            learned = self._backend.clock_offset
            read_at = None if learned is None else self._now() + learned
            found = await self._look(subject, state, start, end)
            if found is not None:
                self._own(subject, attempt_id, found.id)
                log.info(
                    "shot %s: the lost submit's task is %s (proved by its frames)",
                    subject.shot_id,
                    found.id,
                )
                return found
            if (
                read_at is not None
                and read_at >= closes
                and not state.read_failed
                and not state.pending
            ):
                self._conclude(subject, attempt_id, state)
                return None
            server_now = self._now() + self._offset(None)
            if server_now >= closes + opts.pending_limit:
                why = state.read_failed or "a candidate is still running"
                raise self._give_up(subject, attempt_id, state, why)
            left = max(0.0, (closes - server_now).total_seconds())
            self._on_wait(
                subject.shot_id,
                "settling a lost answer through the history"
                + (f" (window closes in {left:.0f} s)" if left else ""),
            )
            await self._sleep(min(opts.poll_s, left) if left else opts.poll_s)

    def _offset(self, recorded: timedelta | None) -> timedelta:
        """Return the server's clock minus ours: as recorded at send time, else the latest."""
        if recorded is not None:
            return recorded
        learned = self._backend.clock_offset
        return timedelta(0) if learned is None else learned

    async def _look(
        self, subject: Subject, state: _Settling, start: datetime, end: datetime
    ) -> Prediction | None:
        """Read the history once; prove what can be proved; return the one proved task."""
        try:
            history = await list_all_predictions(
                self._backend, model=subject.model, created_after=start, created_before=end
            )
        except BackendError as exc:
            state.read_failed = str(exc)
            log.warning("shot %s: the history could not be read: %s", subject.shot_id, exc)
            return None
        state.read_failed = ""
        in_window = [
            p
            for p in history
            if start <= p.created_at <= end and p.model == subject.model and p.status != "failed"
        ]
        owned = self._registry.owned([p.id for p in in_window])
        owned |= {t for _, t in self._store.task_owners()}
        for task_id in owned:
            state.verdicts.pop(task_id, None)  # claimed since: some other shot's after all
        state.pending.clear()
        matches = [
            candidate
            for candidate in in_window
            if candidate.id not in owned and await self._judge(candidate, subject, state)
        ]
        if len(matches) == 1 and self._registry.claim(
            matches[0].id, owner=subject.owner, origin=self._origin
        ):
            return matches[0]
        if len(matches) > 1:
            for match in matches:
                state.verdicts[match.id] = "undecided"
        return None

    async def _judge(self, listed: Prediction, subject: Subject, state: _Settling) -> bool:
        """Say whether *listed* is proved to be the subject's task; remember what was learned."""
        known = state.verdicts.get(listed.id)
        if known is not None:
            return known == "match"
        candidate = listed
        if not candidate.is_final:
            # The history may show a stale status: ask the task itself.
            candidate = await self._fresh(candidate)
            if not candidate.is_final:
                state.pending.add(candidate.id)
                return False
        if candidate.status == "failed":
            return False  # refunded: whoever made it, adopting or fearing it changes nothing
        verdict: Verdict = "undecided"
        if candidate.succeeded:
            verdict = await self._prover.verdict(candidate, subject)
        state.verdicts[candidate.id] = verdict
        return verdict == "match"

    async def _fresh(self, candidate: Prediction) -> Prediction:
        try:
            return await self._backend.get_prediction(candidate.id)
        except BackendError as exc:
            log.info("candidate %s could not be looked up: %s", candidate.id, exc)
            return candidate

    def _conclude(self, subject: Subject, attempt_id: int, state: _Settling) -> None:
        """Resend, or leave the shot uncertain: the window has closed and nothing is pending."""
        undecided = tuple(sorted(t for t, v in state.verdicts.items() if v != "mismatch"))
        if undecided:
            raise self._uncertain(
                subject,
                attempt_id,
                f"its answer was lost and {len(undecided)} task(s) in the history could be "
                f"it but could not be proved ({', '.join(undecided)})",
                undecided,
            )
        self._store.record_refused(
            attempt_id, "answer lost; the history shows no task of ours: never created"
        )

    def _give_up(
        self, subject: Subject, attempt_id: int, state: _Settling, why: str
    ) -> SubmitFailedError:
        maybe = {t for t, v in state.verdicts.items() if v != "mismatch"}
        ids = tuple(sorted(state.pending | maybe))
        return self._uncertain(
            subject,
            attempt_id,
            f"its answer was lost and the history could not settle it ({why})",
            ids,
        )

    def _uncertain(
        self, subject: Subject, attempt_id: int, why: str, candidates: tuple[str, ...]
    ) -> SubmitFailedError:
        message = (
            f"{why}; not resubmitting. Check the candidates on WaveSpeed, then run again "
            "with --resubmit-uncertain to pay for a new task"
        )
        self._store.record_uncertain(attempt_id, message)
        log.warning("shot %s: %s", subject.shot_id, message)
        return SubmitFailedError(message, state="uncertain", candidates=candidates)
