"""Any text into reportlab markup whose every glyph is drawn: embedded TrueType fonts chosen per
character, right-to-left runs shaped and reordered, long text cut into paragraphs that paginate.

reportlab draws only what its font has, and its built-in fonts are Latin-1: names such as
"Łukasz", Arabic, Hebrew, CJK or emoji came out as black boxes. reportlab has no font fallback,
so this module picks, per character, the first embedded font that has a glyph for it: DejaVu Sans
(Latin, Greek, Cyrillic, Hebrew, Arabic), then a CJK font, then a symbol font with emoji. Arabic
is shaped with arabic-reshaper and right-to-left runs are put in visual order with python-bidi,
since reportlab's paragraphs lay text out left to right.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from xml.sax.saxutils import escape

from inspector.audit.errors import AuditError

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))
# (reportlab name, file names in order of preference, Debian package, required?)
FONTS = (
    ("InspSans", ("DejaVuSans.ttf",), "fonts-dejavu-core", True),
    ("InspSansBold", ("DejaVuSans-Bold.ttf",), "fonts-dejavu-core", True),
    ("InspCJK", ("wqy-zenhei.ttc", "wqy-microhei.ttc"), "fonts-wqy-zenhei", False),
    ("InspSymbols", ("Symbola_hint.ttf", "Symbola.ttf"), "fonts-symbola", False),
)
FALLBACK_ORDER = ("InspSans", "InspCJK", "InspSymbols")
INVISIBLE = dict.fromkeys(map(ord, "\u200d\ufe0e\ufe0f\u200b\u2060"))  # joiners, variation selectors
RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
CHUNK = 2000  # characters per paragraph: reportlab re-wraps a split paragraph, so keep them small


class FontMissing(AuditError):
    """A font the PDF export needs is not installed."""


def _find(names: tuple[str, ...]) -> Path | None:
    extra = os.environ.get("INSPECTOR_FONT_DIR")
    for d in ((extra,) if extra else ()) + FONT_DIRS:
        root = Path(d)
        if not root.is_dir():
            continue
        for name in names:
            direct = root / name
            if direct.is_file():
                return direct
            hit = next(root.rglob(name), None)
            if hit is not None:
                return hit
    return None


@functools.cache
def register_fonts() -> dict[str, frozenset[int]]:
    """Registers the embedded fonts once; returns each font's covered code points.

    Raises:
        FontMissing: DejaVu Sans is not installed (the one-line error names the package).
    """
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    cover: dict[str, frozenset[int]] = {}
    for name, files, package, required in FONTS:
        path = _find(files)
        if path is None:
            if required:
                raise FontMissing(
                    f"the PDF export needs the font {files[0]} (Debian: apt-get install {package}); "
                    f"not found under {', '.join(FONT_DIRS)} or INSPECTOR_FONT_DIR"
                )
            continue
        font = TTFont(name, str(path), subfontIndex=0) if path.suffix == ".ttc" else TTFont(name, str(path))
        pdfmetrics.registerFont(font)
        cover[name] = frozenset(font.face.charToGlyph)
    addMapping("InspSans", 0, 0, "InspSans")
    addMapping("InspSans", 1, 0, "InspSansBold")
    addMapping("InspSans", 0, 1, "InspSans")
    addMapping("InspSans", 1, 1, "InspSansBold")
    return cover


def missing_glyphs(text: str) -> set[str]:
    """Characters of ``text`` no embedded font can draw (empty when every glyph renders)."""
    cover = register_fonts()
    return {
        ch
        for ch in set(text.translate(INVISIBLE))
        if ch.isprintable() and not any(ord(ch) in cover.get(f, ()) for f in FALLBACK_ORDER)
    }


def visual(text: str) -> str:
    """Arabic shaped and right-to-left runs reordered for a left-to-right layout engine."""
    if not RTL.search(text):
        return text
    import arabic_reshaper
    from bidi.algorithm import get_display

    return str(get_display(arabic_reshaper.reshape(text)))


def markup(text: str) -> str:
    """Escaped paragraph markup with a ``<font>`` run wherever DejaVu lacks the glyph."""
    cover = register_fonts()
    base = cover["InspSans"]
    out: list[str] = []
    run: list[str] = []
    current = "InspSans"

    def flush() -> None:
        if run:
            body = escape("".join(run))
            out.append(body if current == "InspSans" else f'<font name="{current}">{body}</font>')
            run.clear()

    for ch in visual(text.translate(INVISIBLE)):
        cp = ord(ch)
        font = "InspSans"
        if cp not in base:
            font = next((f for f in FALLBACK_ORDER[1:] if cp in cover.get(f, ())), "InspSans")
        if font != current:
            flush()
            current = font
        run.append(ch)
    flush()
    return "".join(out)


def chunks(text: str, size: int = CHUNK) -> list[list[str]]:
    """Text as groups of lines of at most about ``size`` characters each: a long line is cut at
    a space near ``size`` (anywhere if it has none), short lines are grouped."""
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        while len(line) > size:
            cut = line.rfind(". ", size // 2, size)  # a paragraph break reads best after a sentence
            cut = cut + 1 if cut > 0 else line.rfind(" ", size // 2, size)
            cut = size if cut <= 0 else cut
            lines.append(line[:cut])
            line = line[cut:].lstrip(" ")
        lines.append(line)
    groups: list[list[str]] = [[]]
    n = 0
    for line in lines:
        if groups[-1] and n + len(line) > size:
            groups.append([])
            n = 0
        groups[-1].append(line)
        n += len(line) + 1
    return groups


def paragraph_markup(lines: list[str]) -> str:
    """One paragraph's markup from a group of ``chunks``: lines kept as line breaks."""
    return "<br/>".join(markup(line) for line in lines)
