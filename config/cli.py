"""The command line: --help (description, epilog, each flag's text and default), one-line errors, --version.

``load_settings`` parses argv with it and hands the flags to
config/settings.py's ``settings_from``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import platform
import re
import sys
from typing import Any, Mapping, NoReturn, Sequence

from config.flags import BOOL_FLAGS, NOT_ON_ARGV, PARSERS, flag, refuse_secrets_on_argv
from config.settings import Settings, settings_from

# Defaults --help shows in words, where the value alone would not say it.
_DEFAULT_WORDS = {
    "redis_url": "none: the in-process bus, one process only",
    "node_id": "host name and port",
    "log_format": "console on a terminal, else json",
    "cookie_secret": "a new random secret at each start, so names reset",
    "allowed_origins": "none: only the page's own origin",
    "token_secret": "none",
    "token_secret_file": "none",
    "token_public_key": "none",
    "token_jwks_url": "none",
    "token_audience": "not checked",
    "token_issuer": "not checked",
    "private_rooms": "none",
    "token_refresh_url": "none: the page cannot renew its token",
    "api_port": "none: no server API",
    "api_keys": "none",
    "data_file": "none: the in-process bus's history is lost at restart",
    "access_log": "on with JSON logs, off with console logs",
    "allowed_hosts": "none: loopback names on a loopback host, any otherwise",
    "run_as": "none: stay who started it",
    "max_http_connections_per_client": "as --max-connections-per-client",
    "forwarded_allow_ips": "127.0.0.1,::1 (the loopback addresses)",
    "history_bytes": "1m",
    "memory_budget": "256m",
}

_DESCRIPTION = """\
Room chat server: the lobby (/chat/), room pages (/chat/<room>/) and room
WebSockets (/ws/chat/<room>/). Without a Redis URL it runs one process on the
in-process bus; with one, any number of processes form one chat."""

_EPILOG = """\
commands:
  server.py cluster [...]   a deployment on this machine: Redis, N processes,
                            nginx in front (server.py cluster --help)
  server.py report [...]    per-room traffic report of the server's JSON logs
                            (server.py report --help)
  server.py status [...]    the processes of a running deployment, their lag
                            and the busiest rooms, read from Redis
                            (server.py status --help)

Every setting is also CHAT_<NAME> in the environment (shown with each flag;
REDIS_URL works too) and a key in the TOML file given with --config.
A flag wins over the environment, which wins over the files. The cookie
secret has no flag: set CHAT_COOKIE_SECRET in the environment or cookie_secret
in a config file (a command line is visible to every user of the machine)."""


VERSION = "1.0.0"


def version_text() -> str:
    """What ``--version`` prints: this server's version and what it runs on."""
    try:
        tornado = importlib.metadata.version("tornado")
    except importlib.metadata.PackageNotFoundError:
        tornado = "not installed"
    return f"room chat {VERSION} (Python {platform.python_version()}, Tornado {tornado})"


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that a mistake is one line naming the flag (with a guess at the one meant), not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {self._explain(message)}\n")

    def _explain(self, message: str) -> str:
        hint = f"{self.prog} --help lists them all"
        if message.startswith("unrecognized arguments: "):
            unknown = message.split()[2].split("=")[0]
            if not unknown.startswith("-"):
                return f"unexpected argument {unknown!r} (flags start with --); {hint}"
            known = [option for action in self._actions for option in action.option_strings]
            guess = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
            return f"unknown flag {unknown}" + (f" (did you mean {guess[0]}?)" if guess else "") + f"; {hint}"
        found = re.match(r"argument ([^:]+): expected one argument", message)
        if found:
            return f"{found.group(1).split('/')[0]} needs a value"
        return f"{message.replace('argument ', '', 1)}; {hint}"


def build_arg_parser(prog: str = "server.py") -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --po is not --port: a typo says so
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with settings, over config/chat.toml (env CHAT_CONFIG)"
    )
    add_setting_flags(parser)
    return parser


def _help(name: str, text: str) -> str:
    """A flag's help: what it does, its default and its environment variable."""
    if name in _DEFAULT_WORDS:
        default = _DEFAULT_WORDS[name]
    else:
        default = _shown(Settings.__dataclass_fields__[name].default)
    env = "CHAT_" + name.upper() + (" or REDIS_URL" if name == "redis_url" else "")
    # argparse formats help with %: a literal percent sign must be doubled.
    return f"{text} (default: {default}; env {env})".replace("%", "%%")


_METAVARS = {
    "history": "MESSAGES",
    "retention": "MESSAGES",
    "run_as": "USER",
    "history_bytes": "BYTES",
    "memory_budget": "BYTES",
    "max_connections_per_client": "CONNECTIONS",
    "max_http_connections_per_client": "CONNECTIONS",
}


def _shown(value: Any) -> str:
    """A default as a person reads it: on/off, 20 rather than 20.0, none rather than () or nothing."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value in ((), "", None):
        return "none"
    return str(value)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for name, (_, help_text) in PARSERS.items():
        if name in NOT_ON_ARGV:
            continue  # no flag at all: the epilog says where it goes
        if name == "access_log":
            parser.add_argument(
                flag(name), dest=name, action=argparse.BooleanOptionalAction, help=_help(name, help_text)
            )
        elif name in BOOL_FLAGS:
            parser.add_argument(flag(name), dest=name, action="store_const", const=True, help=_help(name, help_text))
        else:
            metavar = _METAVARS.get(name, name.split("_")[-1].upper())
            parser.add_argument(flag(name), dest=name, metavar=metavar, help=_help(name, help_text))


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags, environment and config files into Settings; raise SettingsError."""
    environ = os.environ if environ is None else environ
    arguments = list(sys.argv[1:] if argv is None else argv)
    refuse_secrets_on_argv(arguments)
    args = build_arg_parser().parse_args(arguments)
    return settings_from(vars(args), environ)
