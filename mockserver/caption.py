"""The prompt written on a render's frames (``--caption``), in a bitmap font of its own.

A font file would make the bytes depend on the machine (which fonts it has, which FreeType
renders them), and PyAV's FFmpeg has no ``drawtext``; 60 glyphs of 5 x 7 pixels, scaled by
whole pixels, draw the same on every machine. Lower case is drawn as upper case, accents are
dropped, and anything else unknown is a ``?``.

The caption is a dark band across the bottom of every frame *but the first and the last*:
those two are what the client compares with its pictures to prove a lost task its own, and
the last one is the next shot's first frame in a chain, so they stay the bare render.
"""

from __future__ import annotations

import textwrap
import unicodedata
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    import av
    import numpy as np
    from numpy.typing import NDArray

#: Each glyph: its character, then its 7 rows, each a base-32 digit whose 5 bits are pixels
#: (the highest bit leftmost).
_GLYPHS: Final = (
    "Aehhvhhh Buhhuhhu Cehggghe Dsihhhis Evgguggv Fvgguggg Gehgnhhf Hhhhvhhh Ie44444e "
    "J72222ic Khikokih Lggggggv Mhrllhhh Nhhpljhh Oehhhhhe Puhhuggg Qehhhlid Ruhhukih "
    "Sfgge11u Tv444444 Uhhhhhhe Vhhhhha4 Whhhllla Xhha4ahh Yhha4444 Zv1248gv 0ehjlphe "
    "14c4444e 2eh1248v 3v2421he 426aiv22 5vgu11he 668guhhe 7v124888 8ehhehhe 9ehhf12c "
    ".00000cc ,0000c48 ;0cc0c48 :0cc0cc0 !4444404 ?eh12404 '4480000 \"aaa0000 -000v000 "
    "_000000v (2488842 )8422248 /01248g0 &cik8lid #aavavaa %op248j3 +044v440 =00v0v00 "
    "*04lel40 <248g842 >8421248 @eh1dlle [e88888e ]e22222e"
)
_GLYPH_W: Final = 5
_GLYPH_H: Final = 7
#: A character cell in font pixels: the glyph and one column, three rows of space.
_CELL_W: Final = _GLYPH_W + 1
_CELL_H: Final = _GLYPH_H + 3
#: The most lines a caption takes; a longer prompt ends in "...".
MAX_LINES: Final = 3
#: Font pixels per frame pixel: one per this many pixels of the frame's short side.
_PIXELS_PER_SCALE: Final = 160
#: What the band keeps of the picture's brightness and colour, out of 256, and the text's
#: luma (limited range: 16 black, 235 white).
_BAND_KEEP: Final = 90
_TEXT_LUMA: Final = 235


def _font() -> dict[str, tuple[int, ...]]:
    return {
        entry[0]: tuple(int(digit, 32) for digit in entry[1:]) for entry in _GLYPHS.split(" ")
    } | {" ": (0,) * _GLYPH_H}


_FONT: Final = _font()


def printable(text: str) -> str:
    """Return *text* as the font can draw it: upper case, no accents, ``?`` for the rest."""
    plain = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in plain if not unicodedata.combining(c)).upper()
    return "".join(
        c if c in _FONT else ("?" if c.isprintable() and not c.isspace() else " ") for c in kept
    )


def wrap(text: str, columns: int) -> list[str]:
    """Break *text* into at most `MAX_LINES` lines of *columns*, "..." ending a cut."""
    words = " ".join(printable(text).split())
    lines = textwrap.wrap(words, max(columns, 4), break_on_hyphens=False) or [""]
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES]
        lines[-1] = lines[-1][: max(columns, 4) - 3].rstrip() + "..."
    return lines


@attrs.frozen(eq=False)
class Caption:
    """A caption laid out for one frame size: where its band starts, and its text pixels."""

    #: The band's first row (even, so the chroma planes have a whole half of it).
    top: int
    #: True where a text pixel is, over the band's rows and the frame's width.
    mask: NDArray[np.bool_]

    @classmethod
    def layout(cls, text: str, width: int, height: int) -> Caption:
        """Lay *text* out at the bottom of a *width* x *height* frame."""
        import numpy as np  # noqa: PLC0415 - loaded only when a caption is drawn

        scale = max(1, min(width, height) // _PIXELS_PER_SCALE)
        margin = 2 * scale
        lines = wrap(text, (width - 2 * margin) // (_CELL_W * scale))
        band = margin + _CELL_H * scale * len(lines)
        band = min(height, band + band % 2)
        pixels = np.zeros((band, width), dtype=bool)
        for row, line in enumerate(lines):
            top = margin + row * _CELL_H * scale
            for column, char in enumerate(line):
                glyph = np.array(
                    [
                        [(bits >> (_GLYPH_W - 1 - x)) & 1 for x in range(_GLYPH_W)]
                        for bits in _FONT[char]
                    ],
                    dtype=bool,
                )
                big = glyph.repeat(scale, axis=0).repeat(scale, axis=1)
                left = margin + column * _CELL_W * scale
                area = pixels[top : top + big.shape[0], left : left + big.shape[1]]
                area |= big[: area.shape[0], : area.shape[1]]
        return cls(top=height - band, mask=pixels)

    def draw(self, frame: av.VideoFrame) -> None:
        """Darken the band of a yuv420p *frame* and write the text on it, in place."""
        import numpy as np  # noqa: PLC0415

        for index, plane in enumerate(frame.planes):
            data = bytes(plane)
            top = (self.top if index == 0 else self.top // 2) * plane.line_size
            rows = np.frombuffer(data[top:], dtype=np.uint8).reshape(-1, plane.line_size)
            band = rows[:, : plane.width].astype(np.int16)
            if index == 0:
                darker = 16 + ((band - 16).clip(0) * _BAND_KEEP >> 8)
                band = np.where(self.mask, _TEXT_LUMA, darker)
            else:  # chroma: halfway rows, towards grey (128)
                band = 128 + ((band - 128) * _BAND_KEEP >> 8)
            drawn = rows.copy()
            drawn[:, : plane.width] = band
            plane.update(data[:top] + drawn.tobytes())
