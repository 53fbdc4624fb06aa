"""The settings table: each setting's parser and --help text, which have no flag, and how a flag is spelled.

The table itself is data, in config/flags.toml: one line a setting, in the
order of --help. A new setting is a Settings field (config/settings.py) and
a line there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable, Sequence

from config import values as parse
from config.values import SettingsError

TABLE = Path(__file__).with_name("flags.toml")


def _read_table(path: Path) -> dict[str, tuple[Callable[[str, Any], Any], str]]:
    """name -> (parser, flag help), in the file's order; a parser not in config/values.py fails the import."""
    with path.open("rb") as handle:
        table = tomllib.load(handle)
    return {name: (getattr(parse, spec["parser"]), spec["help"]) for name, spec in table.items()}


# name -> (parser, flag help). The order is the order of --help.
PARSERS: dict[str, tuple[Callable[[str, Any], Any], str]] = _read_table(TABLE)
BOOL_FLAGS = {"log_message_text", "behind_proxy", "redis_cluster"}
# Settings that never come from a command line: any user can read one (ps,
# /proc/<pid>/cmdline). The flag exists only to say so.
NOT_ON_ARGV = {"cookie_secret", "token_secret", "api_keys"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def refuse_secrets_on_argv(arguments: Sequence[str]) -> None:
    """A secret on a command line is readable by every user (ps): stop before it is used."""
    for argument in arguments:
        for name in NOT_ON_ARGV:
            if argument == flag(name) or argument.startswith(flag(name) + "="):
                raise SettingsError(
                    f"{flag(name)} is not a flag: a command line is visible to every user of the machine; "
                    f"set CHAT_{name.upper()} in the environment or {name} in a config file"
                )
