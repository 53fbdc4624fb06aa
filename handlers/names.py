"""Display names (README, "Using it"): normalised, visible, and not lookalikes of one another.

A name is NFKC-normalised (full-width and other compatibility forms become
their plain letters, so ``ａｄｍｉｎ`` is ``admin``), its blanks collapsed, and
refused when it shows nothing (only spaces, fillers such as U+3164 or U+2800,
invisible or combining characters), holds a filler or a control, or stacks
more than ``MAX_COMBINING_RUN`` combining marks.

Names are identities here (one name, one member), so two people who chose
one name are one member. Lookalikes are not: a name that reads as a plain
Latin name without being it (``аdmin`` with a Cyrillic а) is shown with a
short tag derived from its exact text (``аdmin#4f1c``), so no two members of
a room ever show the same visible name. Chosen names may not end in such a
tag themselves.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_USER_NAME = 32
MAX_COMBINING_RUN = 4

# Characters that render as blank space yet are not whitespace to Python.
FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u034f\u17b4\u17b5\u2060\ufeff\u200b")
_TAG = re.compile(r"#[0-9a-f]{4}\Z")
_BLANKS = re.compile(r" {2,}")  # after NFKC, which makes other spaces plain ones

# Cyrillic and Greek letters that look like Latin ones (after NFKC), for the
# lookalike check; enough for the letters a name can be faked with.
_LATIN_LOOKALIKES = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "с": "c",
        "е": "e",
        "һ": "h",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "ԛ": "q",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "ԝ": "w",
        "х": "x",
        "ӏ": "l",
        "А": "A",
        "В": "B",
        "С": "C",
        "Е": "E",
        "Н": "H",
        "І": "I",
        "Ј": "J",
        "К": "K",
        "М": "M",
        "О": "O",
        "Р": "P",
        "Ѕ": "S",
        "Т": "T",
        "Х": "X",
        "У": "Y",
        "Ү": "Y",
        "α": "a",
        "ο": "o",
        "ρ": "p",
        "ν": "v",
        "τ": "t",
        "ι": "i",
        "κ": "k",
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
    }
)


def normalise_name(raw: str) -> str:
    """NFKC, runs of spaces collapsed to one, trimmed of spaces (a tab stays, and is refused)."""
    return _BLANKS.sub(" ", unicodedata.normalize("NFKC", raw)).strip(" ")


def name_problem(name: str) -> str | None:
    """Why a normalised name is refused, or None when it is a valid name."""
    if not 0 < len(name) <= MAX_USER_NAME:
        return f"a name is 1 to {MAX_USER_NAME} characters"
    if not name.isprintable():
        return "a name may not hold control or invisible characters"
    if any(char in FILLERS for char in name):
        return "a name may not hold blank fillers"
    if _longest_combining_run(name) > MAX_COMBINING_RUN:
        return f"at most {MAX_COMBINING_RUN} combining marks in a row"
    if not any(_shows(char) for char in name):
        return "a name must show something"
    if _TAG.search(name):
        return "a name may not end in # and four hex digits (the lookalike tag)"
    return None


def visible_name(name: str) -> str:
    """The name as members see it: tagged when it mimics a different, plain Latin name."""
    lookalike = name.translate(_LATIN_LOOKALIKES)
    if lookalike == name or not lookalike.isascii():
        return name
    return f"{name}#{hashlib.sha256(name.encode()).hexdigest()[:4]}"


def _shows(char: str) -> bool:
    return not char.isspace() and unicodedata.category(char) not in ("Mn", "Me", "Cf")


def _longest_combining_run(name: str) -> int:
    longest = run = 0
    for char in name:
        run = run + 1 if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me") else 0
        longest = max(longest, run)
    return longest
