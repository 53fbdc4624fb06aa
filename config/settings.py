"""One typed, frozen Settings object, parsed once at start-up.

Every setting comes, highest precedence first, from a command-line flag, the
environment (``CHAT_`` + the flag in upper snake case, ``REDIS_URL`` too), the
TOML file named by ``--config``/``CHAT_CONFIG``, ``config/chat.toml``, and the
built-in default. A bad value stops start-up with an error naming the setting
and the value. ``os.environ`` is read in one place: config/cli.py's
``load_settings``, which parses the command line and calls ``settings_from``
here. Each setting's parser and --help text: config/flags.toml (read by config/flags.py).
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from config import values as parse
from config.flags import NOT_ON_ARGV, PARSERS, flag, refuse_secrets_on_argv
from config.values import SettingsError

DEFAULT_FILE = Path(__file__).with_name("chat.toml")


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
    unknown = set(data) - set(PARSERS)
    if unknown:
        raise SettingsError(f"config file {path} has unknown settings: {', '.join(sorted(unknown))}")
    return data


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if environ.get("REDIS_URL"):
        found["redis_url"] = environ["REDIS_URL"]
    for name in PARSERS:
        key = "CHAT_" + name.upper()
        if key in environ:
            found[name] = environ[key]
    return found


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
    refuse_secrets_on_argv([flag(name) for name in NOT_ON_ARGV if flags.get(name) is not None])
    from_flags = {name: value for name, value in flags.items() if name in PARSERS and value is not None}
    raw.update(from_flags)
    labels.update({name: flag(name) for name in from_flags})
    values = {name: PARSERS[name][0](labels[name], value) for name, value in raw.items()}
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
        changes["token_secret"] = parse.secret(
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
