"""The state document saved in a persistent state folder, and reading it back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import attrs
import cattrs

from mockserver.billing import LedgerEntry
from mockserver.media import Upload
from mockserver.tasks import Task

VERSION: Final = 1


@attrs.frozen(kw_only=True)
class Snapshot:
    """Everything that must survive the process, in plain attrs values."""

    seq: int
    balance_usd: Decimal
    ledger: tuple[LedgerEntry, ...]
    tasks: tuple[Task, ...]
    uploads: tuple[Upload, ...]
    webhook_secret: str
    submit_times: tuple[float, ...]
    peak_concurrent: int


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, lambda value, _: Decimal(value))
    return converter


_CONVERTER: Final = _converter()


def dump(snapshot: Snapshot) -> dict[str, Any]:
    """Return *snapshot* as a JSON-ready document."""
    document: dict[str, Any] = _CONVERTER.unstructure(snapshot)
    return {"version": VERSION, **document}


def load(document: dict[str, Any]) -> Snapshot:
    """Read a document written by `dump`."""
    body = dict(document)
    version = body.pop("version", None)
    if version != VERSION:
        raise ValueError(f"state document version {version!r}; this mock reads {VERSION}")
    return _CONVERTER.structure(body, Snapshot)
