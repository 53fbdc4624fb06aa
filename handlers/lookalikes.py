"""Unicode's own data on text that looks like other text: default-ignorable code points and UTS #39 skeletons.

The data files are Unicode's, vendored in handlers/unicode_data/ with their
licence and provenance (its LICENSE file): the Default_Ignorable_Code_Point property
(the standard library does not expose it) and confusables.txt, whose
prototypes give the UTS #39 skeleton. Names and room names use them
(handlers/names.py, handlers/identity.py) so that a look-alike is decided by
Unicode's tables rather than a hand-made list.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

_DATA = Path(__file__).with_name("unicode_data")
_RANGE = re.compile(r"^([0-9A-F]{4,6})(?:\.\.([0-9A-F]{4,6}))?\s*;\s*Default_Ignorable_Code_Point\b", re.M)
# Small capitals are absent from confusables.txt, yet in a name they read as their letter (ᴀdmin).
_SMALL_CAPITAL = re.compile(r"LATIN LETTER SMALL CAPITAL ([A-Z])\Z")


@cache
def _ignorable() -> dict[int, None]:
    """Every Default_Ignorable_Code_Point, as a str.translate table that deletes them."""
    text = (_DATA / "DerivedCoreProperties-Default_Ignorable.txt").read_text(encoding="utf-8")
    table: dict[int, None] = {}
    for first, last in _RANGE.findall(text):
        table.update(dict.fromkeys(range(int(first, 16), int(last or first, 16) + 1)))
    return table


@cache
def _prototypes() -> dict[int, str]:
    """confusables.txt: each confusable character to its prototype (one or more characters)."""
    mapping = json.loads((_DATA / "confusables.json").read_text(encoding="utf-8"))
    return {ord(source): target for source, target in mapping.items() if len(source) == 1}


def is_ignorable(char: str) -> bool:
    """Whether a character is Default_Ignorable_Code_Point (variation selectors, tags, fillers, joiners ...)."""
    return ord(char) in _ignorable()


def strip_ignorable(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` without its default-ignorable code points (those in ``keep`` stay)."""
    table = _ignorable()
    return "".join(char for char in text if ord(char) not in table or char in keep)


def skeleton(text: str) -> str:
    """The UTS #39 skeleton: NFD, every character replaced by its prototype, NFD again.

    Two strings are confusable when their skeletons are equal.
    """
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(_prototypes()))


def ascii_reading(char: str) -> str | None:
    """The plain ASCII a non-ASCII character passes for (``о`` -> ``o``, ``ı`` -> ``i``), or None."""
    if char.isascii():
        return None
    small = _SMALL_CAPITAL.search(unicodedata.name(char, ""))
    reading = small.group(1).lower() if small else skeleton(char)
    return reading if reading.isascii() and reading.strip() else None


def latin_reading(text: str) -> str | None:
    """The plain ASCII text ``text`` passes for without being it, or None when it passes for none.

    It passes for one when every character is ASCII or reads as ASCII
    (``ᎪDMIN`` -> ``ADMIN``), or when it mixes plain ASCII letters with
    characters that read as ASCII (``аdmin日`` -> ``admin日``).
    """
    readings = [ascii_reading(char) for char in text]
    if not any(readings):
        return None
    read = "".join(reading or char for reading, char in zip(readings, text, strict=True))
    mixed = any(char.isascii() and char.isalpha() for char in text)
    return read if read.isascii() or mixed else None


# Read at import, before a process started as root gives up its privileges (runtime/process.py, drop_privileges).
_ignorable()
_prototypes()

__all__ = ["ascii_reading", "is_ignorable", "latin_reading", "skeleton", "strip_ignorable"]
