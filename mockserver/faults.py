"""Fault injection: what can go wrong, on which routes, how often, drawn from a seeded RNG.

Each rule has its own random stream seeded from the config's seed and the rule's position,
so a given sequence of requests meets the same faults on every run.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Iterable
from typing import Final

import attrs


class FaultKind(enum.StrEnum):
    """The kinds of fault the mock can inject."""

    LATENCY = "latency"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    DROP_BEFORE = "drop_before"
    DROP_AFTER = "drop_after"
    TASK_FAILURE = "task_failure"
    SLOW_DOWNLOAD = "slow_download"
    TRUNCATED_DOWNLOAD = "truncated_download"
    LATE_CREATE = "late_create"
    LATE_ANSWER = "late_answer"
    GATEWAY_ERROR = "gateway_error"
    SECOND_CLIENT = "second_client"
    BURST = "burst"
    HOSTILE_ID = "hostile_id"
    WRONG_TASK = "wrong_task"
    ECHO_KEY = "echo_key"


class RouteClass(enum.StrEnum):
    """Groups of routes a fault rule can target."""

    SUBMIT = "submit"
    POLL = "poll"
    UPLOAD = "upload"
    DOWNLOAD = "download"
    OTHER = "other"


#: Task-level failure codes WaveSpeed documents, with the error text the mock gives each.
TASK_ERRORS: Final[dict[int, str]] = {
    1200: "Content moderation: the input or output was flagged",
    1400: "Missing parameter",
    1401: "Invalid parameter",
    1402: "Media not accessible: the input image could not be fetched",
    1403: "Generation failed",
    1405: "Generation failed",
    5000: "Internal error",
    5003: "Service unavailable",
    5004: "Timeout",
}

_ALL_ROUTES: Final = frozenset(RouteClass)
#: Routes a kind may target; the default when a rule names none.
_KIND_ROUTES: Final[dict[FaultKind, frozenset[RouteClass]]] = {
    FaultKind.TASK_FAILURE: frozenset({RouteClass.SUBMIT}),
    FaultKind.SLOW_DOWNLOAD: frozenset({RouteClass.DOWNLOAD}),
    FaultKind.TRUNCATED_DOWNLOAD: frozenset({RouteClass.DOWNLOAD}),
    FaultKind.LATE_CREATE: frozenset({RouteClass.SUBMIT}),
    FaultKind.SECOND_CLIENT: frozenset({RouteClass.SUBMIT}),
    FaultKind.BURST: frozenset({RouteClass.SUBMIT}),
    FaultKind.HOSTILE_ID: frozenset({RouteClass.SUBMIT, RouteClass.POLL, RouteClass.OTHER}),
    FaultKind.WRONG_TASK: frozenset({RouteClass.POLL}),
}
#: Statuses a gateway in front of the API answers with its own (HTML) page.
GATEWAY_STATUSES: Final = frozenset({502, 503, 504})
#: Which first image a second client's task uses: another one, or the intercepted submit's.
SECOND_CLIENT_IMAGES: Final = ("other", "same")
#: The hostile shapes a ``hostile_id`` fault gives a task id (drawn per request).
HOSTILE_ID_FORMS: Final = ("traversal", "slash", "absolute", "long", "control", "dots", "bidi")
#: The disguises an ``echo_key`` fault (or ``echo_key=1``) gives the API key it echoes.
ECHO_KEY_FORMS: Final = ("plain", "upper", "percent", "split")


def hostile_id(form: str, token: str) -> str:
    """Return a task id in the hostile *form* (see `HOSTILE_ID_FORMS`), varied by *token*."""
    return {
        "traversal": f"../../{token}",
        "slash": f"{token[:8]}/{token[8:]}",
        "absolute": f"/etc/{token}",
        "long": token * (4096 // len(token) + 1),
        "control": f"{token}\r\n\x00X-Injected: 1",
        "dots": "..",
        "bidi": f"{token}\u202egpj.exe",
    }[form]


def echo_key(key: str, form: str) -> str:
    """Return a text that echoes *key* in the disguise *form* (see `ECHO_KEY_FORMS`)."""
    shown = {
        "plain": key,
        "upper": key.upper(),
        "percent": "".join(f"%{byte:02X}" for byte in key.encode()),
        "split": f"{key[: len(key) // 2]}\r\n{key[len(key) // 2 :]}",
    }[form]
    return f"request rejected upstream (Authorization: Bearer {shown}); quote it to support"


def _route_set(value: Iterable[str]) -> frozenset[RouteClass]:
    return frozenset(RouteClass(r) for r in value)


def _check_rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name}: must be between 0 and 1, not {value}")


def _check_not_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name}: must not be negative, not {value}")


def _check_codes(_: object, __: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]) -> None:
    unknown = [c for c in value if c not in TASK_ERRORS]
    if unknown or not value:
        known = ", ".join(map(str, TASK_ERRORS))
        raise ValueError(f"codes: {unknown or 'none'} not among the documented codes {known}")


@attrs.frozen(kw_only=True)
class FaultRule:
    """Inject *kind* with probability *rate* on requests of the route classes in *routes*."""

    kind: FaultKind = attrs.field(converter=FaultKind)
    rate: float = attrs.field(default=1.0, validator=_check_rate)
    #: Empty means every route class the kind applies to.
    routes: frozenset[RouteClass] = attrs.field(default=frozenset(), converter=_route_set)
    latency_s: float = 0.5
    retry_after_s: int = 1
    status: int = 503
    codes: tuple[int, ...] = attrs.field(default=tuple(TASK_ERRORS), validator=_check_codes)
    bytes_per_s: int = 256 * 1024
    #: Mock-clock seconds ``late_create`` waits before creating, ``late_answer`` before answering.
    delay_s: float = attrs.field(default=30.0, validator=_check_not_negative)
    #: ``second_client``: ``other`` (a different first image) or ``same`` (the submit's own).
    image: str = attrs.field(default="other", validator=attrs.validators.in_(SECOND_CLIENT_IMAGES))
    #: ``second_client``: its task is created up to this many seconds before or after.
    within_s: float = attrs.field(default=2.0, validator=_check_not_negative)
    #: ``burst``: how many tasks the other client creates, over ``within_s`` seconds.
    count: int = attrs.field(default=1000, validator=attrs.validators.in_(range(1, 100_001)))
    #: ``burst``: the fraction of its tasks that complete (the others fail, refunded).
    completed: float = attrs.field(default=0.02, validator=_check_rate)
    #: ``burst``: fire only on a submit whose answer this mock is about to lose (a
    #: ``drop_after``, ``gateway_error``, ``late_answer`` or ``late_create`` drawn with it).
    lost_only: bool = False
    #: ``task_failure`` and ``gateway_error``: the failed task's error text, or the gateway's
    #: page, echoes the request's API key (in a disguise drawn per request).
    echo_key: bool = False
    #: Inject at most this many times (None: no limit), e.g. "fail the next submit".
    limit: int | None = None

    def __attrs_post_init__(self) -> None:
        allowed = _KIND_ROUTES.get(self.kind, _ALL_ROUTES)
        if not self.routes <= allowed:
            names = ", ".join(sorted(allowed))
            raise ValueError(f"routes: {self.kind} applies only to {names}")
        if self.kind is FaultKind.SERVER_ERROR and not 500 <= self.status <= 599:
            raise ValueError(f"status: a server error is 5xx, not {self.status}")
        if self.kind is FaultKind.GATEWAY_ERROR and self.status not in GATEWAY_STATUSES:
            raise ValueError(f"status: a gateway error is 502, 503 or 504, not {self.status}")
        if self.kind is FaultKind.ECHO_KEY and not 400 <= self.status <= 599:
            raise ValueError(
                f"status: an echoed key comes with an error, 4xx or 5xx, not {self.status}"
            )

    def targets(self, route: RouteClass) -> bool:
        """Say whether this rule may fire on a request of class *route*."""
        return route in (self.routes or _KIND_ROUTES.get(self.kind, _ALL_ROUTES))


@attrs.frozen(kw_only=True)
class FaultConfig:
    """The fault rules in force and the seed their random draws start from."""

    seed: int = 0
    rules: tuple[FaultRule, ...] = ()


def parse_fault(text: str) -> FaultRule:
    """Parse ``KIND[:RATE][:KEY=VALUE...]``, e.g. ``server_error:0.1:routes=poll+submit``.

    Lists (``routes``, ``codes``) are joined with ``+``. Raises ValueError with a message
    suitable for a command line.
    """
    kind, *rest = text.split(":")
    fields: dict[str, object] = {"kind": kind}
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep:
            fields["rate"] = float(part)
        elif key == "routes":
            fields["routes"] = value.split("+")
        elif key == "codes":
            fields["codes"] = tuple(int(c) for c in value.split("+"))
        elif key in {"latency_s", "rate", "delay_s", "within_s", "completed"}:
            fields[key] = float(value)
        elif key == "image":
            fields[key] = value
        elif key in {"lost_only", "echo_key"}:
            fields[key] = value.lower() in {"1", "true", "yes"}
        elif key in {"retry_after_s", "status", "bytes_per_s", "limit", "count"}:
            fields[key] = int(value)
        else:
            raise ValueError(f"unknown fault parameter {key!r} in {text!r}")
    return FaultRule(**fields)  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class SecondClient:
    """What a ``second_client`` fault drew: where the other task goes and what it shows."""

    #: Use the intercepted submit's own first image (the adversarial case).
    same_image: bool
    #: Created just before the real task (backdated by *gap_s*), else *gap_s* after it.
    before: bool
    gap_s: float
    #: Seeded hex that names the other image and prompt, so runs repeat.
    token: str


@attrs.frozen(kw_only=True)
class Burst:
    """What a ``burst`` fault drew: another client's many tasks, just after the submit's."""

    count: int
    within_s: float
    completed: float
    #: Seeded hex that names the other client's batch (its prompts, its one image).
    token: str


@attrs.frozen(kw_only=True)
class Drawn:
    """The faults drawn for one request, already resolved by precedence."""

    latency_s: float = 0.0
    drop_before: bool = False
    error: FaultRule | None = None
    drop_after: bool = False
    task_failure: int | None = None
    download: FaultRule | None = None
    #: Mock-clock delays: create the task this much later; answer this much later.
    late_create_s: float | None = None
    late_answer_s: float | None = None
    #: Act, then answer this status with a gateway's HTML page instead.
    gateway_status: int | None = None
    #: The gateway's page echoes the key in this disguise (`ECHO_KEY_FORMS`).
    gateway_echo: str | None = None
    #: The failed task's error text echoes the key in this disguise.
    failure_echo: str | None = None
    second_client: SecondClient | None = None
    burst: Burst | None = None
    #: Answer with a task id in this hostile form (`HOSTILE_ID_FORMS`) and this token.
    hostile_id: tuple[str, str] | None = None
    #: A poll answered with another task's prediction (a caching proxy).
    wrong_task: bool = False
    #: ``echo_key``: the error answer's message echoes the key in this disguise.
    echo: str | None = None

    @property
    def kinds(self) -> list[str]:
        """Name the faults applied, for the journal."""
        out = [FaultKind.LATENCY.value] if self.latency_s else []
        if self.drop_before:
            return [*out, FaultKind.DROP_BEFORE.value]
        if self.error is not None:
            return [*out, self.error.kind.value]
        if self.download is not None:
            out.append(self.download.kind.value)
        applied = {
            FaultKind.DROP_AFTER: self.drop_after,
            FaultKind.TASK_FAILURE: self.task_failure is not None,
            FaultKind.LATE_CREATE: self.late_create_s is not None,
            FaultKind.LATE_ANSWER: self.late_answer_s is not None,
            FaultKind.GATEWAY_ERROR: self.gateway_status is not None,
            FaultKind.SECOND_CLIENT: self.second_client is not None,
            FaultKind.BURST: self.burst is not None,
            FaultKind.HOSTILE_ID: self.hostile_id is not None,
            FaultKind.WRONG_TASK: self.wrong_task,
        }
        return out + [kind.value for kind, yes in applied.items() if yes]

    @property
    def loses_answer(self) -> bool:
        """Whether the submit's answer will not reach a client that waits its usual time."""
        return (
            self.drop_after
            or self.gateway_status is not None
            or self.late_answer_s is not None
            or self.late_create_s is not None
        )


NO_FAULT: Final = Drawn()


@attrs.define
class FaultInjector:
    """Draws faults for requests; counts what it injected, by kind."""

    _config: FaultConfig
    _rngs: list[random.Random] = attrs.field(init=False)
    _fired: list[int] = attrs.field(init=False)
    injected: Counter[str] = attrs.field(init=False, factory=Counter)

    def __attrs_post_init__(self) -> None:
        self.configure(self._config)

    @property
    def config(self) -> FaultConfig:
        """The rules in force."""
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the rules and restart every random stream from the seed."""
        self._config = config
        self._rngs = [random.Random(f"{config.seed}:{i}") for i in range(len(config.rules))]  # noqa: S311
        self._fired = [0] * len(config.rules)

    def draw(self, route: RouteClass) -> Drawn:
        """Decide which faults hit one request of class *route*."""
        if not self._config.rules:
            return NO_FAULT
        hits: dict[FaultKind, FaultRule] = {}
        extra = _Extra()
        for i, rule in enumerate(self._config.rules):
            if not rule.targets(route):
                continue
            roll = self._rngs[i].random()
            if rule.limit is not None and self._fired[i] >= rule.limit:
                continue
            if roll < rule.rate and rule.kind not in hits:
                hits[rule.kind] = rule
                self._fired[i] += 1
                extra.draw(rule, self._rngs[i])
        drawn = _resolve(hits, extra)
        if drawn.burst is None and (burst := hits.get(FaultKind.BURST)) is not None:
            self._fired[self._config.rules.index(burst)] -= 1  # lost_only: it did not fire
        self.injected.update(drawn.kinds)
        return drawn


@attrs.define
class _Extra:
    """What the rules that fired drew from their own streams, beyond firing."""

    code: int | None = None
    second: SecondClient | None = None
    burst: Burst | None = None
    hostile: tuple[str, str] | None = None
    echo: str | None = None
    gateway_echo: str | None = None
    failure_echo: str | None = None

    def draw(self, rule: FaultRule, rng: random.Random) -> None:
        """Draw what *rule*, which fired, needs from its stream *rng*."""
        match rule.kind:
            case FaultKind.TASK_FAILURE:
                self.code = rng.choice(rule.codes)
                if rule.echo_key:
                    self.failure_echo = rng.choice(ECHO_KEY_FORMS)
            case FaultKind.SECOND_CLIENT:
                self.second = _draw_second(rule, rng)
            case FaultKind.BURST:
                self.burst = Burst(
                    count=rule.count,
                    within_s=rule.within_s,
                    completed=rule.completed,
                    token=f"{rng.getrandbits(64):016x}",
                )
            case FaultKind.HOSTILE_ID:
                self.hostile = (rng.choice(HOSTILE_ID_FORMS), f"{rng.getrandbits(64):016x}")
            case FaultKind.ECHO_KEY:
                self.echo = rng.choice(ECHO_KEY_FORMS)
            case FaultKind.GATEWAY_ERROR if rule.echo_key:
                self.gateway_echo = rng.choice(ECHO_KEY_FORMS)
            case _:
                pass


def _draw_second(rule: FaultRule, rng: random.Random) -> SecondClient:
    """Draw a second client's placement and image from the rule's own stream."""
    return SecondClient(
        same_image=rule.image == "same",
        before=rng.random() < 0.5,
        gap_s=round(rng.uniform(0.0, rule.within_s), 3),
        token=f"{rng.getrandbits(64):016x}",
    )


def _resolve(hits: dict[FaultKind, FaultRule], extra: _Extra) -> Drawn:
    """Apply precedence: a dropped connection hides an error, an error hides the rest.

    Faults that act before the handler (``drop_before``, ``rate_limit``, ``server_error``,
    ``echo_key``) leave nothing done, so they hide the faults that shape what the handler
    does. A ``burst`` with ``lost_only`` applies only when the answer is about to be lost.
    """
    latency = hits.get(FaultKind.LATENCY)
    latency_s = latency.latency_s if latency else 0.0
    if FaultKind.DROP_BEFORE in hits:
        return Drawn(latency_s=latency_s, drop_before=True)
    error = (
        hits.get(FaultKind.RATE_LIMIT)
        or hits.get(FaultKind.SERVER_ERROR)
        or hits.get(FaultKind.ECHO_KEY)
    )
    if error is not None:
        echo = extra.echo if error.kind is FaultKind.ECHO_KEY else None
        return Drawn(latency_s=latency_s, error=error, echo=echo)
    gateway = hits.get(FaultKind.GATEWAY_ERROR)
    drawn = Drawn(
        latency_s=latency_s,
        drop_after=FaultKind.DROP_AFTER in hits,
        task_failure=extra.code,
        failure_echo=extra.failure_echo,
        download=hits.get(FaultKind.TRUNCATED_DOWNLOAD) or hits.get(FaultKind.SLOW_DOWNLOAD),
        late_create_s=_delay(hits.get(FaultKind.LATE_CREATE)),
        late_answer_s=_delay(hits.get(FaultKind.LATE_ANSWER)),
        gateway_status=gateway.status if gateway else None,
        gateway_echo=extra.gateway_echo,
        second_client=extra.second,
        hostile_id=extra.hostile,
        wrong_task=FaultKind.WRONG_TASK in hits,
    )
    burst = hits.get(FaultKind.BURST)
    if burst is not None and (drawn.loses_answer or not burst.lost_only):
        drawn = attrs.evolve(drawn, burst=extra.burst)
    return drawn


def _delay(rule: FaultRule | None) -> float | None:
    return None if rule is None else rule.delay_s
