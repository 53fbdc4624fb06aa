"""Display names (README, "Using it"): normalised, visible, and not lookalikes of one another.

A name loses its default-ignorable code points (``admin`` + U+FE00 is
``admin``), is NFKC-normalised (full-width and other compatibility forms become
their plain letters, so ``ａｄｍｉｎ`` is ``admin``), its blanks collapsed, and
refused when it shows nothing (only spaces, fillers such as U+3164 or U+2800,
invisible or combining characters), holds a filler or a control, or stacks
more than ``MAX_COMBINING_RUN`` combining marks.

Names are identities here (one name, one member), so two people who chose
one name are one member. Lookalikes are not: a name that reads as a plain
Latin name without being it (``аdmin`` with a Cyrillic а, ``admın``, ``ᎪDMIN``,
as Unicode's confusables data has it), or for a staff name (``adrnin``), is shown with a
short tag derived from its exact text (``аdmin#4f1c``), so no two members of
a room ever show the same visible name. Chosen names may not end in such a
tag themselves.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache

from handlers.lookalikes import latin_reading, skeleton, strip_ignorable

MAX_USER_NAME = 32
MAX_COMBINING_RUN = 4

# Characters that render as blank space yet are not whitespace to Python.
FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u034f\u17b4\u17b5\u2060\ufeff\u200b")
_TAG = re.compile(r"#[0-9a-f]{4}\Z")
_BLANKS = re.compile(r" {2,}")  # after NFKC, which makes other spaces plain ones

# Names that belong to the site's staff: an account that merely looks like one is tagged.
RESERVED_NAMES = ("admin", "administrator", "moderator", "mod", "root", "system", "support", "staff")


def normalise_name(raw: str) -> str:
    """Default-ignorables removed, NFKC, runs of spaces collapsed, trimmed of spaces (a tab stays, and is refused).

    Default-ignorable code points (variation selectors, tags, joiners ...)
    draw nothing, so ``admin`` + U+FE00 is ``admin``. The blank fillers among
    them stay, for ``name_problem`` to refuse: they draw a blank gap.
    """
    plain = unicodedata.normalize("NFKC", strip_ignorable(raw, keep=FILLERS))
    return _BLANKS.sub(" ", strip_ignorable(plain, keep=FILLERS)).strip(" ")


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
    """The name as members see it: tagged when it passes for a Latin name it is not, or for a staff name.

    Which names look alike is Unicode's confusables data (handlers/lookalikes.py):
    ``аԁmin``, ``admın``, ``ᎪDMIN`` read as plain Latin names; ``adrnin``'s
    skeleton is ``admin``'s. The tag depends on the name alone, never on who
    else is in a room, so one person shows the same everywhere.
    """
    lowered = name.lower()
    staff = lowered not in RESERVED_NAMES and skeleton(lowered) in _reserved_skeletons()
    if latin_reading(name) is None and not staff:
        return name
    return f"{name}#{hashlib.sha256(name.encode()).hexdigest()[:4]}"


@cache
def _reserved_skeletons() -> frozenset[str]:
    return frozenset(skeleton(name) for name in RESERVED_NAMES)


def _shows(char: str) -> bool:
    return not char.isspace() and unicodedata.category(char) not in ("Mn", "Me", "Cf")


def _longest_combining_run(name: str) -> int:
    longest = run = 0
    for char in name:
        run = run + 1 if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me") else 0
        longest = max(longest, run)
    return longest
