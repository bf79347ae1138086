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
}


def _route_set(value: Iterable[str]) -> frozenset[RouteClass]:
    return frozenset(RouteClass(r) for r in value)


def _check_rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name}: must be between 0 and 1, not {value}")


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
    #: Inject at most this many times (None: no limit), e.g. "fail the next submit".
    limit: int | None = None

    def __attrs_post_init__(self) -> None:
        allowed = _KIND_ROUTES.get(self.kind, _ALL_ROUTES)
        if not self.routes <= allowed:
            names = ", ".join(sorted(allowed))
            raise ValueError(f"routes: {self.kind} applies only to {names}")
        if self.kind is FaultKind.SERVER_ERROR and not 500 <= self.status <= 599:
            raise ValueError(f"status: a server error is 5xx, not {self.status}")

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
        elif key in {"latency_s", "rate"}:
            fields[key] = float(value)
        elif key in {"retry_after_s", "status", "bytes_per_s", "limit"}:
            fields[key] = int(value)
        else:
            raise ValueError(f"unknown fault parameter {key!r} in {text!r}")
    return FaultRule(**fields)  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class Drawn:
    """The faults drawn for one request, already resolved by precedence."""

    latency_s: float = 0.0
    drop_before: bool = False
    error: FaultRule | None = None
    drop_after: bool = False
    task_failure: int | None = None
    download: FaultRule | None = None

    @property
    def kinds(self) -> list[str]:
        """Name the faults applied, for the journal."""
        out = [FaultKind.LATENCY.value] if self.latency_s else []
        if self.drop_before:
            return [*out, FaultKind.DROP_BEFORE.value]
        if self.error is not None:
            return [*out, self.error.kind.value]
        if self.drop_after:
            out.append(FaultKind.DROP_AFTER.value)
        if self.task_failure is not None:
            out.append(FaultKind.TASK_FAILURE.value)
        if self.download is not None:
            out.append(self.download.kind.value)
        return out


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
        code: int | None = None
        for i, rule in enumerate(self._config.rules):
            if not rule.targets(route):
                continue
            roll = self._rngs[i].random()
            if rule.limit is not None and self._fired[i] >= rule.limit:
                continue
            if roll < rule.rate and rule.kind not in hits:
                hits[rule.kind] = rule
                self._fired[i] += 1
                if rule.kind is FaultKind.TASK_FAILURE:
                    code = self._rngs[i].choice(rule.codes)
        drawn = _resolve(hits, code)
        self.injected.update(drawn.kinds)
        return drawn


def _resolve(hits: dict[FaultKind, FaultRule], code: int | None) -> Drawn:
    """Apply precedence: a dropped connection hides an error, an error hides the rest."""
    latency = hits.get(FaultKind.LATENCY)
    latency_s = latency.latency_s if latency else 0.0
    if FaultKind.DROP_BEFORE in hits:
        return Drawn(latency_s=latency_s, drop_before=True)
    error = hits.get(FaultKind.RATE_LIMIT) or hits.get(FaultKind.SERVER_ERROR)
    if error is not None:
        return Drawn(latency_s=latency_s, error=error)
    return Drawn(
        latency_s=latency_s,
        drop_after=FaultKind.DROP_AFTER in hits,
        task_failure=code,
        download=hits.get(FaultKind.TRUNCATED_DOWNLOAD) or hits.get(FaultKind.SLOW_DOWNLOAD),
    )
