"""A part's options from the settings (or a command line's arguments): each field from the value of its name.

The one way the wiring hands a ``Settings`` (or an ``argparse`` namespace)
to a part that takes a dataclass of its own: the fields named alike are
copied, the others are given by name, and what neither has keeps its default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def same_named(cls: type[T], source: object, **given: Any) -> T:
    """``cls(**given)`` plus, for each other field of ``cls`` that ``source`` has, ``source``'s value of that name."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    copied = {
        field.name: getattr(source, field.name)
        for field in dataclasses.fields(cls)
        if field.init and field.name not in given and hasattr(source, field.name)
    }
    return cls(**copied, **given)
