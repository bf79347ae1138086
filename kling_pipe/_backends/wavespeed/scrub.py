"""The API key out of every text a server sends, before anything keeps, logs or shows it.

A server may echo the key back: in an error message, in a failed task's ``error``, in an
HTML page from a proxy. Whatever we keep of such a text goes through one `Scrubber` at the
border (the parser of answers, the client's error mapping), so that no code further in ever
holds the raw text and none can forget to clean it.

Scrub, then cut: a text is cleaned whole and only then shortened for a message
(`Scrubber.brief`). Cutting first would let a key straddling the cut through, all but the
few characters that fell past it.

Besides the exact key, the scrubber finds the obvious disguises of it: the key split by
whitespace or a line break (any run of whitespace and control characters is first made one
space, which also keeps every message on one line), the key percent-encoded in whole or in
part, and the key in another letter case.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

__all__ = ["MASK", "Scrubber", "cut"]

#: What the key is replaced with.
MASK: Final = "***"
#: Whitespace, C0 and C1 control characters, and the invisible format characters (zero-width
#: and bidirectional marks) that could hide a split or spoof a log line: each run becomes one
#: space.
_UNPRINTABLE: Final = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]+"
)
_ELLIPSIS: Final = "..."


def cut(text: str, limit: int) -> str:
    """Return *text* shortened to at most *limit* characters, marked with ``...`` when cut.

    Call it only on scrubbed text (`Scrubber.brief` does both, in that order).
    """
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(_ELLIPSIS))] + _ELLIPSIS


def _key_pattern(key: str) -> re.Pattern[str]:
    """Match *key* in a one-line text: any character percent-encoded, one space between any two."""
    parts = []
    for char in key:
        encoded = "".join(f"%{byte:02x}" for byte in char.encode())
        parts.append(f"(?:{re.escape(char)}|{encoded})")
    # A lookahead, so that overlapping occurrences are all found: masking one occurrence of
    # a key like ``abcabc`` in ``abcabcabc`` must not leave the tail of the other behind.
    return re.compile(f"(?=({' ?'.join(parts)}))", re.IGNORECASE)


def _mask(pattern: re.Pattern[str], text: str) -> str:
    """Replace the union of every (possibly overlapping) match of *pattern* by one MASK each."""
    pieces: list[str] = []
    done = 0  # text[:done] is handled
    masked_to = -1  # the end of the span being masked, or -1 outside one
    for match in pattern.finditer(text):
        start, end = match.span(1)
        if start > masked_to >= 0:  # a gap since the span being masked: close it
            pieces.append(MASK)
            done, masked_to = masked_to, -1
        if masked_to < 0:
            pieces.append(text[done:start])
        masked_to = max(masked_to, end)
    if masked_to >= 0:
        pieces.append(MASK)
        done = masked_to
    pieces.append(text[done:])
    return "".join(pieces)


def _one_line(text: str) -> str:
    return _UNPRINTABLE.sub(" ", text).strip()


@attrs.frozen
class Scrubber:
    """Replace the API key (and its obvious disguises) by ``***`` in any text from a server.

    Calling it returns the text on one line with every occurrence of the key masked. The key
    never appears in its repr.
    """

    _key: str = attrs.field(repr=False, alias="key")
    _pattern: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    @_key.validator
    def _check_key(self, _: attrs.Attribute[str], key: str) -> None:
        if not key or any(c.isspace() or not c.isprintable() for c in key):
            # Never quote the key: this message may be printed.
            msg = "the key to scrub must be non-empty, on one line, without spaces"
            raise ValueError(msg)

    @_pattern.default
    def _compile(self) -> re.Pattern[str]:
        return _key_pattern(self._key)

    def __call__(self, text: str) -> str:
        """Return *text* on one line with the key masked wherever it appears."""
        return _mask(self._pattern, _one_line(text))

    def brief(self, text: str, limit: int) -> str:
        """Scrub *text*, then cut it to *limit* characters: the only safe order."""
        return cut(self(text), limit)

    def finds_key(self, text: str) -> bool:
        """Whether *text* holds the key (in any disguise the scrubber knows)."""
        return self._pattern.search(_one_line(text)) is not None
