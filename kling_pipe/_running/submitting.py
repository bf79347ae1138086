"""The submit protocol's shell: a shot's task created at most once, and never taken from another.

A submit is the only request that costs money, and its answer can be lost. What may be on the
wire together is the engine's decision (the submit turn, `kling_pipe._decisions.engine`);
what a reading of the history means is the settle step's (`kling_pipe._decisions.settle`).
This unit carries them out, in this order, with what is durable before each request:

1. **waiting** for its turn (`Turns.ask`): nothing is written. The engine grants it when no
   submit whose first frame is like this one's is on the wire or lost and unsettled (an
   earlier run's intents included), with the rate limit's wait.
2. **intent**: committed before the request, with our send time and the server's clock offset
   (learned first, by one free read of the history, if no answer has taught it yet), and
   entered in the user's registry as on the wire, so another run on this machine never takes
   its task meanwhile.
3. **submitted**: the answer's task id is committed and claimed before anything else. A
   **refused** submit created nothing and is recorded so.
4. **lost** and **settling**: the history of the window is read whole, candidates are proved
   by their frames, and the settle step says adopt, resend (a new intent), uncertain, or wait.

The argument for why no schedule pays twice is in docs/submit-protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Literal, Protocol

from kling_pipe._backends.base import Backend, Prediction, SubmitRequest
from kling_pipe._decisions import settle
from kling_pipe._decisions.attempts import Attempt
from kling_pipe._decisions.settle import CandidateState, SettleOptions
from kling_pipe._records.registry import OnTheWire, Registry
from kling_pipe._records.store import Store
from kling_pipe._running.history import read_window
from kling_pipe._running.proving import Prover, Subject
from kling_pipe.exceptions import AuthError, BackendError, KlingPipeError, SubmitOutcomeUnknown

__all__ = ["SettleOptions", "SubmitFailedError", "SubmitProtocol", "Turns"]

log = logging.getLogger("kling_pipe")


#: Reads of the history (each retried by the client) before a first submit goes out without
#: the server's clock: its intent could then never conclude "no task" if its answer is lost.
CLOCK_READS = 5


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


class Turns(Protocol):
    """The engine's submit turn, as the scheduler hands it out."""

    async def ask(self, subject: Subject) -> float:
        """Wait for the turn; return how long the rate limit still asks to wait."""
        ...

    def settled(self, subject: Subject) -> None:
        """End the subject's turn: its fate is known."""
        ...


class SubmitProtocol:
    """Creates each shot's task at most once; see the module docstring."""

    def __init__(  # noqa: PLR0913 - the protocol's whole context, keyword-only
        self,
        *,
        backend: Backend,
        store: Store,
        registry: Registry,
        origin: str,
        options: SettleOptions,
        prover: Prover,
        turns: Turns,
        storyboard: str,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]],
        locked: bool = False,
        on_wait: Callable[[Subject, str], None] = lambda _subject, _what: None,
        on_attempt: Callable[[str, int], None] = lambda _unit, _attempt: None,
        on_task: Callable[[str, str], None] = lambda _unit, _task: None,
    ) -> None:
        self._backend = backend
        self._store = store
        self._registry = registry
        self._origin = origin
        self._options = options
        self._prover = prover
        self._turns = turns
        self._storyboard = storyboard
        self._now = now
        self._sleep = sleep
        self._locked = locked
        self._on_wait = on_wait
        self._on_attempt = on_attempt
        self._on_task = on_task

    async def submit(self, subject: Subject, request: SubmitRequest) -> tuple[Prediction, int]:
        """Create the subject's task; return it with its attempt id, or raise SubmitFailedError."""
        if self._locked:  # whatever was decided upstream, --locked never pays
            raise SubmitFailedError("--locked: a new task would be paid for; nothing was sent")
        wait = await self._turns.ask(subject)
        try:
            if wait > 0:
                self._on_wait(subject, f"waiting for the rate limit ({wait:.0f} s)")
                await self._sleep(wait)
            await self._learn_server_clock()
            for _ in range(self._options.max_resends + 1):
                found = await self._send_once(subject, request)
                if found is not None:
                    return found
                log.info(
                    "shot %s: the lost submit created no task; sending it again", subject.shot_id
                )
            raise SubmitFailedError(
                f"the submit's answer was lost {self._options.max_resends + 1} times; giving up "
                "(the history showed no task each time)"
            )
        finally:
            self._turns.settled(subject)

    async def _send_once(
        self, subject: Subject, request: SubmitRequest
    ) -> tuple[Prediction, int] | None:
        """Write the intent, send, and own the answer; settle a lost one. None: send again."""
        # Read together: ``sent_at + offset`` is the server's time of the send whatever the
        # machine's clock does later (the offset follows a step of it, `Backend.clock_offset`).
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
            pictures=dict(subject.pictures),
        )
        self._on_attempt(subject.shot_id, attempt_id)
        self._registry.open_wire(
            OnTheWire(
                storyboard=self._storyboard,
                attempt=attempt_id,
                model=subject.model,
                frame=subject.key[0],
                origin=self._origin,
                sent_at=sent_at,
                clock_offset=offset,
            )
        )
        try:
            prediction = await self._send(subject, request, attempt_id)
        except SubmitOutcomeUnknown as unknown:
            log.warning("shot %s: %s", subject.shot_id, unknown)
            gave_up_at = sent_at + self._since(sent_at, offset)
            found = await self._settle(subject, attempt_id, sent_at, offset, gave_up_at=gave_up_at)
            return None if found is None else (found, attempt_id)
        except AuthError as exc:
            self._refused(attempt_id, str(exc))
            raise SubmitFailedError(str(exc), fatal=True) from None
        except BackendError as exc:
            self._refused(attempt_id, str(exc))
            raise SubmitFailedError(f"submit refused: {exc}") from None
        return prediction, attempt_id

    def _since(self, sent_at: datetime, offset_at_send: timedelta | None) -> timedelta:
        """How long ago a submit was sent, measured on the server's clock where it is known.

        The machine's clock may have been stepped meanwhile; the server's is carried on a
        clock that never jumps (`Backend.clock_offset`).
        """
        offset_now = self._backend.clock_offset
        if offset_at_send is not None and offset_now is not None:
            elapsed = (self._now() + offset_now) - (sent_at + offset_at_send)
        else:
            elapsed = self._now() - sent_at
        return max(elapsed, timedelta(0))

    async def settle_recorded(self, subject: Subject, attempt: Attempt) -> Prediction | None:
        """Settle an intent an earlier run left without a task id (it was killed meanwhile).

        Its turn was held from the start of the run (`RunStarted.holding`) and ends here.
        Returns the proved task, or None when the history shows the submit created nothing
        (the attempt is then recorded refused); raises SubmitFailedError (uncertain) when it
        cannot tell.
        """
        try:
            # The request ended (answered, lost or killed) by its answer time-out at the latest.
            gave_up_at = attempt.sent_at + self._options.answer_timeout
            return await self._settle(
                subject, attempt.id, attempt.sent_at, attempt.clock_offset, gave_up_at=gave_up_at
            )
        finally:
            self._turns.settled(subject)

    async def _learn_server_clock(self) -> None:
        """Learn the server's clock before the first intent: a free read of the history.

        Read again (`CLOCK_READS` times at most) while the history fails: a server that
        answers but sends no ``Date`` is submitted to all the same.

        An intent written without it could only be placed later on a clock learned after the
        fact, and a machine whose clock was corrected in between would look in the wrong
        window: such an intent never concludes "no task" (`settle.window`).
        """
        for _ in range(CLOCK_READS):
            if self._backend.clock_offset is not None:
                return
            try:
                await self._backend.list_predictions(page=1, page_size=1)
            except AuthError:
                raise
            except BackendError as exc:
                # A history that fails now would fail the settling too: nothing is lost by
                # waiting a little for an answer (the turn is held, nothing is on the wire).
                log.info("the server's clock could not be learned before submitting: %s", exc)
                await self._sleep(self._options.poll_s)
            else:
                return  # answered: with a Date, the clock is known; without, it never will be

    async def _send(self, subject: Subject, request: SubmitRequest, attempt_id: int) -> Prediction:
        """Send one submit; record its task before anything else, even when cancelled.

        The request runs in a task of its own, shielded: a Ctrl-C while it is on the wire
        waits for its answer, so the summary and the store name the task it created. An
        answer naming a task another submit's own answer holds (a proxy replaying answers)
        is no answer: the outcome is unknown, and the history settles it.
        """
        sent_at = self._now()
        sending = asyncio.ensure_future(self._backend.submit(request))
        try:
            prediction = await asyncio.shield(sending)
        except asyncio.CancelledError:
            await asyncio.wait({sending})
            if not sending.cancelled() and sending.exception() is None:
                self._own(subject, attempt_id, sending.result(), proved=False)
            raise
        if not self._own(subject, attempt_id, prediction, proved=False):
            raise SubmitOutcomeUnknown(
                f"the answer names task {prediction.id}, which another submit's own answer "
                f"holds ({self._registry.owner(prediction.id)}): a replayed answer, not this "
                "submit's",
                model=request.model,
                sent_at=sent_at,
            )
        return prediction

    def _own(self, subject: Subject, attempt_id: int, task: Prediction, *, proved: bool) -> bool:
        """Claim the task for this attempt, then record it; False if the registry refuses.

        The claim comes first: a task is one request's, and the registry (one per user, every
        storyboard's claims) is where two answers naming one task meet. A submit's own answer
        takes a task over from a run that had only proved it; a proof never takes one. A
        kill between the claim and the record leaves the claim under this very owner, which
        the settling of the intent does not count as someone else's (`Registry.owned`).
        """
        if not self._registry.claim(
            task.id, owner=subject.owner, origin=self._origin, proved=proved
        ):
            if not proved:
                log.warning(
                    "task %s was answered to shot %s but the registry gives it to %s",
                    task.id,
                    subject.shot_id,
                    self._registry.owner(task.id),
                )
            return False
        self._store.record_task(attempt_id, task.id)
        self._registry.close_wire(self._storyboard, attempt_id)
        # Named by the subject: an earlier run's intent (``intent:<id>``) is no take's submit,
        # and may be of inputs its shot no longer has; its take, if any, notes what it found.
        self._on_task(subject.name, task.id)
        return True

    def _refused(self, attempt_id: int, why: str) -> None:
        self._store.record_refused(attempt_id, why)
        self._registry.close_wire(self._storyboard, attempt_id)

    # Settling a lost answer: the shell of `settle.settle_step`.

    async def _settle(
        self,
        subject: Subject,
        attempt_id: int,
        sent_at: datetime,
        offset_at_send: timedelta | None,
        *,
        gave_up_at: datetime,
    ) -> Prediction | None:
        """Find the lost submit's task by proof, or show that it cannot exist."""
        verdicts: dict[str, CandidateState] = {}
        found: dict[str, Prediction] = {}
        provable = await self._prover.can_prove(subject)
        while True:
            win = settle.window(
                sent_at=sent_at,
                gave_up_at=gave_up_at,
                offset_at_send=offset_at_send,
                offset_now=self._backend.clock_offset,
                options=self._options,
            )
            reading = await self._read(subject, attempt_id, win, verdicts, found)
            offset = self._backend.clock_offset or timedelta(0)
            step = settle.settle_step(
                win, reading, now=self._now() + offset, provable=provable, options=self._options
            )
            match step:
                case settle.Adopt(task_id=task_id):
                    if self._own(subject, attempt_id, found[task_id], proved=True):
                        log.info(
                            "shot %s: the lost submit's task is %s (proved by its frames)",
                            subject.shot_id,
                            task_id,
                        )
                        return found[task_id]
                    verdicts.pop(task_id, None)  # claimed meanwhile: someone else's
                case settle.Resend():
                    self._refused(
                        attempt_id,
                        "answer lost; the history shows no task of ours: never created",
                    )
                    return None
                case settle.Uncertain(why=why, candidates=candidates):
                    raise self._uncertain(subject, attempt_id, why, candidates, gave_up_at)
                case settle.Wait(seconds=seconds, closes_in_s=left):
                    self._on_wait(
                        subject,
                        "settling a lost answer through the history"
                        + (f" (window closes in {left:.0f} s)" if left else ""),
                    )
                    await self._sleep(seconds)

    async def _read(
        self,
        subject: Subject,
        attempt_id: int,
        win: settle.Window,
        verdicts: dict[str, CandidateState],
        found: dict[str, Prediction],
    ) -> settle.Reading:
        """Read the window's history once and judge its candidates (verdicts are kept)."""
        learned = self._backend.clock_offset
        started_at = None if learned is None else self._now() + learned
        try:
            history = await read_window(
                self._backend, model=subject.model, start=win.start, end=win.end
            )
        except BackendError as exc:
            log.warning("shot %s: the history could not be read: %s", subject.shot_id, exc)
            return settle.Reading(started_at=started_at, complete=False, error=str(exc))
        in_window = [
            p
            for p in history.tasks
            if win.start <= p.created_at <= win.end
            and p.model == subject.model
            and p.status != "failed"
        ]
        owned = self._registry.owned([p.id for p in in_window], but=subject.owner)
        owned |= {t for _, t in self._store.task_owners()}
        wires = self._other_wires(subject, attempt_id)
        states: dict[str, CandidateState] = {}
        for listed in in_window:
            if listed.id in owned:
                verdicts.pop(listed.id, None)  # claimed since: some other shot's after all
                continue
            state = await self._judge(listed, subject, verdicts, found)
            if state is None:
                continue  # failed after all: refunded, whoever made it
            states[listed.id] = self._beside(state, listed, wires)
        return settle.Reading(started_at=started_at, complete=history.complete, candidates=states)

    def _other_wires(self, subject: Subject, attempt_id: int) -> list[OnTheWire]:
        """Return the other submits on this machine with the subject's first frame, fate open.

        Another run's on the wire, or any submit left uncertain (this storyboard's included):
        each may have made a task the subject's frames prove. This storyboard's submits in
        flight in this run are never among them with a like frame: the engine's turn keeps
        them apart.
        """
        return [
            wire
            for wire in self._registry.on_the_wire(
                model=subject.model, frame=subject.key[0], origin=self._origin
            )
            if (wire.storyboard, wire.attempt) != (self._storyboard, attempt_id)
        ]

    def _beside(
        self, state: CandidateState, task: Prediction, wires: list[OnTheWire]
    ) -> CandidateState:
        """Say what a candidate is, given the other like submits that may have made it.

        One still on the wire may yet be answered with it: "wire", wait for its fate. One
        left uncertain will not change: a candidate it may have made is at best undecided
        (the proof shows the same first frame for both). A mismatch is no one's here.
        """
        if state == "mismatch":
            return state
        makers = [
            wire
            for wire in wires
            if settle.may_have_made(
                task.created_at,
                sent_at=wire.sent_at,
                offset_at_send=wire.clock_offset,
                offset_now=self._backend.clock_offset,
                options=self._options,
                gave_up_at=wire.gave_up_at,
            )
        ]
        if any(not wire.uncertain for wire in makers):
            return "wire"
        if makers and state == "match":
            return "undecided"
        return state

    async def _judge(
        self,
        listed: Prediction,
        subject: Subject,
        verdicts: dict[str, CandidateState],
        found: dict[str, Prediction],
    ) -> CandidateState | None:
        """Say what *listed* is for the subject (None: failed, not a candidate); remember it."""
        known = verdicts.get(listed.id)
        if known is not None and known != "pending":
            return known
        candidate = listed
        if not candidate.is_final:
            # The history may show a stale status: ask the task itself.
            try:
                candidate = await self._backend.get_prediction(candidate.id)
            except BackendError as exc:
                log.info("candidate %s could not be looked up: %s", candidate.id, exc)
            if not candidate.is_final:
                verdicts[candidate.id] = "pending"
                return "pending"
        if candidate.status == "failed":
            verdicts.pop(candidate.id, None)
            return None
        state: CandidateState = "undecided"
        if candidate.succeeded:
            state = await self._prover.verdict(candidate, subject)
        verdicts[candidate.id] = state
        found[candidate.id] = candidate
        return state

    def _uncertain(
        self,
        subject: Subject,
        attempt_id: int,
        why: str,
        candidates: tuple[str, ...],
        gave_up_at: datetime,
    ) -> SubmitFailedError:
        message = (
            f"{why}; not resubmitting. Check the candidates on WaveSpeed, then "
            f"`kling-pipe adopt FILE {subject.shot_id} TASK_ID` makes the one that is the "
            "shot's its own without paying, or run again with --resubmit-uncertain to pay "
            "for a new task"
        )
        self._store.record_uncertain(attempt_id, message)
        # It stays on the wire: its task may exist, and no other submit may take it by proof.
        self._registry.leave_uncertain(self._storyboard, attempt_id, gave_up_at)
        log.warning("shot %s: %s", subject.shot_id, message)
        return SubmitFailedError(message, state="uncertain", candidates=candidates)
