"""Which facts the store fsyncs at once, and which may wait for the next fsync.

The money facts (an intent before its submit, a task id, a render and its file record) are
committed with `synchronous=FULL`; counts and caches (polls, final status, thumbnails'
records, uploads) without an fsync of their own. Seen through SQLite's statement trace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kling_pipe._records.store import Store

RELAX = "PRAGMA synchronous=NORMAL"


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "state") as opened:
        yield opened


def traced(store: Store) -> list[str]:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    return statements


def intent(store: Store) -> int:
    return store.record_intent(
        shot_id="s",
        fingerprint="f",
        inputs="{}",
        model="m",
        duration=5,
        cost=Decimal("0.42"),
        sent_at=datetime.now(UTC),
        origin="mock",
    )


FACTS = {
    "intent": (intent, True),
    "task id": (lambda s: s.record_task(intent(s), "t1"), True),
    "refused": (lambda s: s.record_refused(intent(s), "no"), True),
    "uncertain": (lambda s: s.record_uncertain(intent(s), "?"), True),
    "rejected": (lambda s: s.record_rejected(intent(s), "bad"), True),
    "download": (lambda s: s.record_download(intent(s), file="a.mp4", sha256="0", size=1), True),
    "output file": (lambda s: s.record_file("a.mp4", kind="output", origin="m", sha256="0"), True),
    "polls": (lambda s: s.record_polls(intent(s), 3), False),
    "final status": (lambda s: s.record_final(intent(s), completed=True), False),
    "thumbnail": (lambda s: s.record_file("t.jpg", kind="thumb", origin="m", sha256="0"), False),
    "chain frame": (lambda s: s.record_file("f.png", kind="frame", origin="m", sha256="0"), False),
    "upload": (lambda s: s.record_upload("0", "https://x", "https://x/u", 1), False),
}


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_money_facts_are_fsynced_at_once_and_the_rest_may_wait(store, fact):
    record, durable = FACTS[fact]
    intent(store)  # the set-up's own commits are not what is looked at
    statements = traced(store)
    record(store)
    commits = [i for i, sql in enumerate(statements) if sql == "COMMIT"]
    own = statements[commits[-2] + 1 if len(commits) > 1 else 0 : commits[-1]]  # the fact's
    assert (RELAX in own) is not durable
    assert _synchronous(store) == 2  # FULL again for whatever comes next


def test_a_relaxed_commit_that_fails_leaves_the_connection_fully_synchronous(store):
    with pytest.raises(RuntimeError), store._tx(durable=False):
        raise RuntimeError
    assert _synchronous(store) == 2


def test_a_store_opened_not_durable_never_switches(tmp_path):
    with Store.open(tmp_path / "state", durable=False) as store:
        statements = traced(store)
        store.record_polls(intent(store), 1)
        assert not any(sql.startswith("PRAGMA synchronous") for sql in statements)


def test_facts_that_waited_are_there_after_reopening(tmp_path):
    with Store.open(tmp_path / "state") as store:
        attempt = intent(store)
        store.record_polls(attempt, 7)
        store.record_final(attempt, completed=True)
    with Store.open(tmp_path / "state") as store:
        (recorded,) = store.attempts()
    assert (recorded.polls, recorded.state) == (7, "completed")


def _synchronous(store: Store) -> int:
    return int(store._db.execute("PRAGMA synchronous").fetchone()[0])
