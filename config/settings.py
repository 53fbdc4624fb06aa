"""One typed, frozen Settings object, parsed once at start-up.

Every setting comes, highest precedence first, from a command-line flag, the
environment (``CHAT_`` + the flag in upper snake case, ``REDIS_URL`` too), the
TOML file named by ``--config``/``CHAT_CONFIG``, ``config/chat.toml``, and the
built-in default. This module is the only reader of ``os.environ``; a bad value
stops start-up with an error naming the setting and the value.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.metadata
import ipaddress
import os
import platform
import re
import secrets
import socket
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

DEFAULT_FILE = Path(__file__).with_name("chat.toml")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names both."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8888
    redis_url: str | None = None
    node_id: str = ""  # filled from host name and port when empty
    history: int = 50
    retention: int = 1000
    rate_limit: float = 20.0  # messages per second per connection; 0 turns it off
    rate_burst: int = 40
    log_format: str = ""  # "json" or "console"; empty: console on a terminal
    log_level: str = "info"  # the least severe lines written: debug, info, warning, error
    access_log: bool | None = None  # a line per HTTP request; None: on with JSON logs, off with console ones
    event_loop: str = "uvloop"  # or "asyncio": Python's own
    log_message_text: bool = False  # room traffic is logged without text unless set
    cookie_secret: str = field(default="", repr=False)  # random per process when empty (one process only)
    allowed_origins: tuple[str, ...] = ()
    behind_proxy: bool = False
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")  # peers whose forwarded headers are believed
    presence_timeout: float = 30.0
    max_message_chars: int = 4096
    max_frame_bytes: int = 64 * 1024
    send_buffer_limit: int = 1024 * 1024  # unsent bytes before a slow client is dropped
    resend_window: float = 600.0  # seconds a client_id is remembered for safe resends
    edit_window: float = 900.0  # seconds after sending during which its author may edit a message; 0: always
    redis_timeout: float = 1.0  # seconds; a publish to an unreachable Redis fails after this
    redis_cluster: bool = False  # redis_url names one node of a Redis Cluster (README, "A Redis Cluster")
    redis_prefix: str = "chat"  # every Redis key starts with "<prefix>:"
    redis_wait_replicas: int = 0  # replicas that must hold a message before it is accepted
    redis_wait_timeout: int = 500  # ms to wait for them
    shutdown_timeout: float = 5.0
    cookie_secret_generated: bool = field(default=False, repr=False)
    ping_interval: float = 20.0  # seconds between pings of every WebSocket; 0 turns pings off
    ping_timeout: float = 20.0  # seconds a pinged WebSocket has to answer before it is closed
    max_connections: int = 10000  # WebSockets per process; the next handshake gets 503
    max_connections_per_client: int = 100  # WebSockets per client address; the next gets 429
    # Open HTTP connections per address (not the proxy's); None: as max_connections_per_client; 0: no cap.
    max_http_connections_per_client: int | None = None
    room_ttl: float = 604800.0  # seconds after a room's last message before it is freed; 0: never
    history_bytes: int = 1024 * 1024  # UTF-8 bytes of message text a room retains at most; 0: no bound
    memory_budget: int = 256 * 1024 * 1024  # bytes of history the in-process bus retains over all rooms; 0: none
    client_rate_limit: float = 100.0  # frames per second per client address, over all its connections
    client_rate_burst: int = 200
    join_rate: float = 10.0  # WebSocket handshakes per second per address (or token user); 0 turns it off
    join_burst: int = 20
    room_create_rate: float = 30.0  # new rooms per minute per address (or token user); 0 turns it off
    replay_rate: int = 1024 * 1024  # history bytes a second replayed to one address (or token user); 0: unpaced
    replay_burst: int = 2 * 1024 * 1024  # history bytes replayed at once before that pace applies
    header_timeout: float = 10.0  # seconds for a request's headers (and an idle keep-alive)
    max_body_bytes: int = 64 * 1024  # largest HTTP request body; the name form is a few bytes
    allowed_hosts: tuple[str, ...] = ()  # Host names served; empty: loopback names on a loopback host
    data_file: str = ""  # SQLite file of the in-process bus's history; empty: history lives in memory only
    commit_window: float = 5.0  # ms the data file gathers writes into one commit; each waits that long for its ack
    run_as: str = ""  # started as root: the user to become once listening (the cluster launcher sets it)
    # Token mode (identity from the host application): on when one key is set.
    token_secret: str = field(default="", repr=False)  # HS256 key: CHAT_TOKEN_SECRET, or read from the file
    token_secret_file: str = ""
    token_public_key: str = ""  # a PEM file: RS256, ES256 or EdDSA
    token_public_key_pem: str = field(default="", repr=False)  # its text, read once at start-up
    token_jwks_url: str = ""
    token_audience: str = ""
    token_issuer: str = ""
    token_cookie: str = "chat_token"
    auth_timeout: float = 5.0  # seconds for the first frame to bring a token when no cookie did
    private_rooms: tuple[str, ...] = ()  # room names with * wildcards that need a grant in the token
    token_refresh_url: str = ""  # the host site's URL the room page fetches fresh tokens from
    # The server API (the host application's backend): on when api_port is set.
    api_port: int | None = None  # None: no API listener; 0: any free port
    api_host: str = "127.0.0.1"
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # CHAT_API_KEYS or the config file, never argv
    api_rate_limit: float = 1000.0  # requests per second per key; 0 turns it off
    api_rate_burst: int = 2000
    status_interval: float = 2.0  # seconds between this process's status records (server.py status, /admin/)
    metrics_interval: float = 5.0  # seconds between samples of reader lag and the busiest rooms
    metrics_top_rooms: int = 10  # rooms with figures of their own (a room label) in /metrics

    @property
    def token_mode(self) -> bool:
        return bool(self.token_secret or self.token_public_key_pem or self.token_jwks_url)

    @property
    def logs_requests(self) -> bool:
        """The access log: as set, else on with JSON logs (a terminal is not flooded by a line per file)."""
        return self.access_log if self.access_log is not None else self.log_format != "console"

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)


def _positive_int(name: str, raw: Any) -> int:
    value = _int(name, raw)
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {raw!r}")
    return value


def _non_negative_int(name: str, raw: Any) -> int:
    value = _int(name, raw)
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value


def _int(name: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_SIZE_UNITS |= {"g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def _size(name: str, raw: Any) -> int:
    """Bytes, as a whole number or with a binary unit: 1048576, 1024k, 1m, 256MiB (k, m, g are 1024-based)."""
    found = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(raw).lower())
    if found is None or found.group(2) not in _SIZE_UNITS:
        raise SettingsError(f"{name} must be a size in bytes (a whole number, or with k, m or g), got {raw!r}")
    return int(found.group(1)) * _SIZE_UNITS[found.group(2)]


def _redis_prefix(name: str, raw: Any) -> str:
    text = str(raw)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise SettingsError(f"{name} must be 1 to 64 of A-Z a-z 0-9 _ . -, got {raw!r}")
    return text


def _non_negative_float(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value


def _positive_float(name: str, raw: Any) -> float:
    """A period: 0.05 s at least (each tick costs Redis a write)."""
    value = _non_negative_float(name, raw)
    if value < 0.05:
        raise SettingsError(f"{name} must be at least 0.05, got {raw!r}")
    return value


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _text(name: str, raw: Any) -> str:
    return str(raw)


MIN_SECRET_BYTES = 32


def _secret(name: str, raw: Any) -> str:
    text = str(raw)
    if text and len(text.encode()) < MIN_SECRET_BYTES:
        # The value itself is not repeated: it is a secret, even when too short.
        raise SettingsError(f"{name} must be at least {MIN_SECRET_BYTES} bytes (got {len(text.encode())})")
    return text


def _port(name: str, raw: Any) -> int:
    value = _int(name, raw)
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be a TCP port (0-65535), got {raw!r}")
    return value


def _log_format(name: str, raw: Any) -> str:
    if raw not in ("json", "console", ""):
        raise SettingsError(f"{name} must be 'json' or 'console', got {raw!r}")
    return str(raw)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level(name: str, raw: Any) -> str:
    text = str(raw).strip().lower()
    if text not in _LOG_LEVELS:
        raise SettingsError(f"{name} must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return text


def _event_loop(name: str, raw: Any) -> str:
    if raw not in ("uvloop", "asyncio"):
        raise SettingsError(f"{name} must be 'uvloop' or 'asyncio', got {raw!r}")
    return str(raw)


def _origins(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    origins = tuple(str(item).strip().rstrip("/").lower() for item in items if str(item).strip())
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise SettingsError(f"{name} entries must look like scheme://host[:port], got {origin!r}")
    return origins


def _hosts(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    hosts = tuple(str(item).strip().lower() for item in items if str(item).strip())
    for host in hosts:
        if "/" in host or " " in host:
            raise SettingsError(f"{name} entries must be host names (or *), got {host!r}")
    return hosts


def _allow_ips(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    entries = tuple(str(item).strip() for item in items if str(item).strip())
    for entry in entries:
        try:
            entry == "*" or ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"{name} entries must be IP addresses, networks or *, got {entry!r}") from None
    return entries


def _room_patterns(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    patterns = tuple(str(item).strip() for item in items if str(item).strip())
    for pattern in patterns:
        if not re.fullmatch(r"[\w*]{1,100}", pattern):
            raise SettingsError(f"{name} entries must be room names with * wildcards, got {pattern!r}")
    return patterns


def _http_url(name: str, raw: Any) -> str:
    text = str(raw).strip()
    if text and not text.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return text


def _refresh_url(name: str, raw: Any) -> str:
    text = str(raw).strip()
    if text and not text.startswith(("/", "http://", "https://")) or text.startswith("//"):
        raise SettingsError(f"{name} must be a path of this site (/...) or an http(s) URL, got {raw!r}")
    return text


def _cookie_name(name: str, raw: Any) -> str:
    text = str(raw)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise SettingsError(f"{name} must be a cookie name (1 to 64 of A-Z a-z 0-9 _ . -), got {raw!r}")
    return text


def _optional_count(name: str, raw: Any) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    return _non_negative_int(name, raw)


def _optional_port(name: str, raw: Any) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    return _port(name, raw)


def _api_keys(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    keys = tuple(str(item).strip() for item in items if str(item).strip())
    for key in keys:
        _secret(name, key)  # each at least MIN_SECRET_BYTES; the value is never repeated
    return keys


def _redis_url(name: str, raw: Any) -> str | None:
    text = str(raw).strip()
    if not text:
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{name} must be a redis://, rediss:// or unix:// URL")
    return text


# name -> (parser, flag help). The order is the order of --help.
_PARSERS: dict[str, tuple[Callable[[str, Any], Any], str]] = {
    "host": (_text, "address to listen on"),
    "port": (_port, "port to listen on"),
    "redis_url": (_redis_url, "Redis URL; without it the in-process bus is used"),
    "node_id": (_text, "stable name of this process in the cluster"),
    "history": (_non_negative_int, "messages replayed on join; 0: none"),
    "retention": (_positive_int, "messages kept per room, at least"),
    "rate_limit": (
        _non_negative_float,
        "messages per second a user may send in a room, over all their connections to it; 0 turns it off",
    ),
    "rate_burst": (_positive_int, "burst of that per-user rate limit"),
    "log_format": (_log_format, "json or console"),
    "log_level": (_log_level, "least severe log lines written: debug, info, warning or error"),
    "access_log": (_bool, "a log line per HTTP request (pages, static files, health checks)"),
    "event_loop": (_event_loop, "uvloop (libuv's loop: a tenth less CPU per message) or asyncio (Python's)"),
    "log_message_text": (_bool, "include message text in the traffic log"),
    "cookie_secret": (_secret, "refused here: set CHAT_COOKIE_SECRET or cookie_secret in a config file"),
    "allowed_origins": (_origins, "comma-separated scheme://host[:port] also allowed to connect"),
    "behind_proxy": (_bool, "trust X-Forwarded-For/-Proto/-Host from the proxy (--forwarded-allow-ips)"),
    "forwarded_allow_ips": (_allow_ips, "comma-separated addresses or networks of the proxy; * for any peer"),
    "presence_timeout": (_non_negative_float, "seconds before a dead process's members leave; 0: never"),
    "max_message_chars": (_positive_int, "longest message text, in code points"),
    "max_frame_bytes": (_positive_int, "larger frames close the connection with 1009"),
    "send_buffer_limit": (_positive_int, "unsent bytes before a slow client is dropped"),
    "resend_window": (_non_negative_float, "seconds a client_id is remembered"),
    "edit_window": (_non_negative_float, "seconds after sending in which a message may be edited (0: always)"),
    "redis_timeout": (_non_negative_float, "seconds before a Redis command is given up"),
    "redis_cluster": (_bool, "the Redis URL names one node of a Redis Cluster"),
    "redis_prefix": (_redis_prefix, "every Redis key starts with this and a colon"),
    "redis_wait_replicas": (_non_negative_int, "replicas that must hold a message before it is accepted"),
    "redis_wait_timeout": (_positive_int, "ms to wait for those replicas before answering unavailable"),
    "shutdown_timeout": (_non_negative_float, "seconds SIGTERM waits for connections to close"),
    "ping_interval": (_non_negative_float, "seconds between WebSocket pings (0: no pings)"),
    "ping_timeout": (_non_negative_float, "seconds a ping may go unanswered before the close"),
    "max_connections": (_positive_int, "WebSockets per process; beyond it a handshake gets 503"),
    "max_connections_per_client": (_positive_int, "WebSockets per client address; beyond it 429"),
    "max_http_connections_per_client": (
        _optional_count,
        "open HTTP connections per client address (the proxy's not counted); beyond it closed at once; 0: no cap",
    ),
    "room_ttl": (_non_negative_float, "seconds after a room's last message before it is freed (0: never)"),
    "history_bytes": (
        _size,
        "bytes of message text a room retains at most, besides --retention; the oldest go first, "
        "the newest is always kept (k, m, g: 1024-based; 0: no bound)",
    ),
    "memory_budget": (
        _size,
        "bytes of message text the in-process bus retains over all rooms; past it the least recently "
        "written rooms lose their history first (k, m, g: 1024-based; 0: no bound; Redis: its maxmemory)",
    ),
    "client_rate_limit": (_non_negative_float, "frames per second per client address; 0 turns it off"),
    "client_rate_burst": (_positive_int, "burst of the per-address rate limit"),
    "join_rate": (_non_negative_float, "WebSocket handshakes per second per address or user; beyond it 429"),
    "join_burst": (_positive_int, "burst of the join rate"),
    "room_create_rate": (_non_negative_float, "new rooms per minute per address or user; beyond it 429"),
    "replay_rate": (_non_negative_int, "history bytes per second replayed to one address or user; 0: unpaced"),
    "replay_burst": (_positive_int, "history bytes replayed to one address or user before that pace applies"),
    "header_timeout": (_non_negative_float, "seconds for request headers and idle keep-alive"),
    "max_body_bytes": (_positive_int, "largest HTTP request body in bytes"),
    "allowed_hosts": (_hosts, "comma-separated Host names served (DNS rebinding guard); * for any"),
    "run_as": (_text, "when started as root, become this user once listening"),
    "token_secret": (_secret, "refused here: set CHAT_TOKEN_SECRET, or use --token-secret-file"),
    "token_secret_file": (_text, "file holding the HS256 key of the host site's tokens (token mode)"),
    "token_public_key": (_text, "PEM file of the public key of the host site's tokens: RS256, ES256, EdDSA"),
    "token_jwks_url": (_http_url, "URL of the host site's JWKS (keys chosen by kid)"),
    "token_audience": (_text, "tokens must carry this aud"),
    "token_issuer": (_text, "tokens must carry this iss"),
    "token_cookie": (_cookie_name, "cookie that may carry the token"),
    "auth_timeout": (_non_negative_float, "seconds for the first frame to bring a token"),
    "private_rooms": (_room_patterns, "comma-separated room names (* wildcards) a token must grant"),
    "token_refresh_url": (_refresh_url, "the host site's URL the room page gets fresh tokens from"),
    "api_port": (_optional_port, "port of the server API (the host application's backend); 0: any free port"),
    "api_host": (_text, "address the server API listens on"),
    "api_keys": (_api_keys, "refused here: set CHAT_API_KEYS (comma-separated) or api_keys in a config file"),
    "api_rate_limit": (_non_negative_float, "server API requests per second per key; 0 turns it off"),
    "api_rate_burst": (_positive_int, "burst of the server API's per-key rate limit"),
    "status_interval": (
        _positive_float,
        "seconds between this process's status records (in Redis: server.py status, the admin page)",
    ),
    "data_file": (_text, "SQLite file where the in-process bus keeps every room's history across restarts"),
    "commit_window": (_non_negative_float, "ms --data-file gathers messages into one commit, each acked after it"),
    "metrics_interval": (_positive_float, "seconds between samples of reader lag and the busiest rooms for /metrics"),
    "metrics_top_rooms": (_non_negative_int, "busiest rooms given figures of their own (a room label) in /metrics"),
}
_BOOL_FLAGS = {"log_message_text", "behind_proxy", "redis_cluster"}
# Settings that never come from a command line: any user can read one (ps,
# /proc/<pid>/cmdline). The flag exists only to say so.
_NOT_ON_ARGV = {"cookie_secret", "token_secret", "api_keys"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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
    for name, (_, help_text) in _PARSERS.items():
        if name in _NOT_ON_ARGV:
            continue  # no flag at all: the epilog says where it goes
        if name == "access_log":
            parser.add_argument(
                _flag(name), dest=name, action=argparse.BooleanOptionalAction, help=_help(name, help_text)
            )
        elif name in _BOOL_FLAGS:
            parser.add_argument(_flag(name), dest=name, action="store_const", const=True, help=_help(name, help_text))
        else:
            metavar = _METAVARS.get(name, name.split("_")[-1].upper())
            parser.add_argument(_flag(name), dest=name, metavar=metavar, help=_help(name, help_text))


def _label_toml(path: Path, data: Mapping[str, Any]) -> dict[str, str]:
    return {name: f"{name} in {path}" for name in data}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - set(_PARSERS)
    if unknown:
        raise SettingsError(f"config file {path} has unknown settings: {', '.join(sorted(unknown))}")
    return data


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if environ.get("REDIS_URL"):
        found["redis_url"] = environ["REDIS_URL"]
    for name in _PARSERS:
        key = "CHAT_" + name.upper()
        if key in environ:
            found[name] = environ[key]
    return found


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags, environment and config files into Settings; raise SettingsError."""
    environ = os.environ if environ is None else environ
    arguments = list(sys.argv[1:] if argv is None else argv)
    refuse_secrets_on_argv(arguments)
    args = build_arg_parser().parse_args(arguments)
    return settings_from(vars(args), environ)


def refuse_secrets_on_argv(arguments: Sequence[str]) -> None:
    """A secret on a command line is readable by every user (ps): stop before it is used."""
    for argument in arguments:
        for name in _NOT_ON_ARGV:
            if argument == _flag(name) or argument.startswith(_flag(name) + "="):
                raise SettingsError(
                    f"{_flag(name)} is not a flag: a command line is visible to every user of the machine; "
                    f"set CHAT_{name.upper()} in the environment or {name} in a config file"
                )


def settings_from(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Merge already-parsed flags with the environment and the config files."""
    raw: dict[str, Any] = {}
    labels: dict[str, str] = {}  # how each value's source names it in an error: --flag, CHAT_X, key in file
    files = [DEFAULT_FILE] if DEFAULT_FILE.exists() else []
    extra_file = flags.get("config") or environ.get("CHAT_CONFIG")
    if extra_file:
        files.append(Path(extra_file))
    for path in files:
        data = _read_toml(path)
        raw.update(data)
        labels.update(_label_toml(path, data))
    from_env = _from_environ(environ)
    raw.update(from_env)
    labels.update({name: _env_name(name, environ) for name in from_env})
    refuse_secrets_on_argv([_flag(name) for name in _NOT_ON_ARGV if flags.get(name) is not None])
    from_flags = {name: value for name, value in flags.items() if name in _PARSERS and value is not None}
    raw.update(from_flags)
    labels.update({name: _flag(name) for name in from_flags})
    values = {name: _PARSERS[name][0](labels[name], value) for name, value in raw.items()}
    return _fill_derived(Settings(**values))


def _env_name(name: str, environ: Mapping[str, str]) -> str:
    key = "CHAT_" + name.upper()
    return key if key in environ or name != "redis_url" else "REDIS_URL"


def _token_keys(settings: Settings) -> dict[str, Any]:
    """Read the token key files once; refuse more than one key source, and token options without a key."""
    changes: dict[str, Any] = {}
    if settings.token_secret_file:
        if settings.token_secret:
            raise SettingsError("set the token secret once: CHAT_TOKEN_SECRET or --token-secret-file, not both")
        changes["token_secret"] = _secret(
            "the key in --token-secret-file", _read_key_file(settings.token_secret_file).strip()
        )
    if settings.token_public_key:
        pem = _read_key_file(settings.token_public_key)
        _check_public_key(settings.token_public_key, pem)
        changes["token_public_key_pem"] = pem
    sources = [bool(changes.get("token_secret") or settings.token_secret), bool(settings.token_public_key)]
    sources.append(bool(settings.token_jwks_url))
    if sum(sources) > 1:
        raise SettingsError("token mode takes one key: a secret, --token-public-key or --token-jwks-url")
    if not any(sources) and (settings.private_rooms or settings.token_refresh_url):
        raise SettingsError("--private-rooms and --token-refresh-url need token mode (a token key)")
    return changes


def _read_key_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read key file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _check_public_key(path: str, pem: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise SettingsError(f"{path} is not a PEM public key") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise SettingsError(f"{path} holds neither an RSA, an EC (P-256) nor an Ed25519 public key")


def _fill_derived(settings: Settings) -> Settings:
    if settings.data_file and settings.redis_url:
        raise SettingsError("--data-file is for the in-process bus: with --redis-url the history is kept in Redis")
    changes: dict[str, Any] = _token_keys(settings)
    if settings.api_port is not None and not settings.api_keys:
        raise SettingsError("--api-port needs at least one key: set CHAT_API_KEYS or api_keys in a config file")
    if not settings.node_id:
        changes["node_id"] = f"{socket.gethostname()}-{settings.port}"
    if not settings.cookie_secret:
        changes["cookie_secret"] = secrets.token_urlsafe(32)
        changes["cookie_secret_generated"] = True
    if not settings.log_format:
        changes["log_format"] = "console" if sys.stdout.isatty() else "json"
    if settings.access_log is None:
        changes["access_log"] = changes.get("log_format", settings.log_format) == "json"
    return dataclasses.replace(settings, **changes)
