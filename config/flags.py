"""The settings table: each setting's parser and --help text, which have no flag, and how a flag is spelled.

The order of PARSERS is the order of --help. A new setting is a Settings
field (config/settings.py) and a line here.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from config import values as parse
from config.values import SettingsError

# name -> (parser, flag help). The order is the order of --help.
PARSERS: dict[str, tuple[Callable[[str, Any], Any], str]] = {
    "host": (parse.text, "address to listen on"),
    "port": (parse.port, "port to listen on"),
    "redis_url": (parse.redis_url, "Redis URL; without it the in-process bus is used"),
    "node_id": (parse.text, "stable name of this process in the cluster"),
    "history": (parse.non_negative_int, "messages replayed on join; 0: none"),
    "retention": (parse.positive_int, "messages kept per room, at least"),
    "rate_limit": (
        parse.non_negative_float,
        "messages per second a user may send in a room, over all their connections to it; 0 turns it off",
    ),
    "rate_burst": (parse.positive_int, "burst of that per-user rate limit"),
    "log_format": (parse.log_format, "json or console"),
    "log_level": (parse.log_level, "least severe log lines written: debug, info, warning or error"),
    "access_log": (parse.boolean, "a log line per HTTP request (pages, static files, health checks)"),
    "event_loop": (parse.event_loop, "uvloop (libuv's loop: a tenth less CPU per message) or asyncio (Python's)"),
    "log_message_text": (parse.boolean, "include message text in the traffic log"),
    "cookie_secret": (parse.secret, "refused here: set CHAT_COOKIE_SECRET or cookie_secret in a config file"),
    "allowed_origins": (parse.origins, "comma-separated scheme://host[:port] also allowed to connect"),
    "behind_proxy": (parse.boolean, "trust X-Forwarded-For/-Proto/-Host from the proxy (--forwarded-allow-ips)"),
    "forwarded_allow_ips": (parse.allow_ips, "comma-separated addresses or networks of the proxy; * for any peer"),
    "presence_timeout": (parse.non_negative_float, "seconds before a dead process's members leave; 0: never"),
    "max_message_chars": (parse.positive_int, "longest message text, in code points"),
    "max_frame_bytes": (parse.positive_int, "larger frames close the connection with 1009"),
    "send_buffer_limit": (parse.positive_int, "unsent bytes before a slow client is dropped"),
    "resend_window": (parse.non_negative_float, "seconds a client_id is remembered"),
    "edit_window": (parse.non_negative_float, "seconds after sending in which a message may be edited (0: always)"),
    "redis_timeout": (parse.non_negative_float, "seconds before a Redis command is given up"),
    "redis_cluster": (parse.boolean, "the Redis URL names one node of a Redis Cluster"),
    "redis_prefix": (parse.redis_prefix, "every Redis key starts with this and a colon"),
    "redis_wait_replicas": (parse.non_negative_int, "replicas that must hold a message before it is accepted"),
    "redis_wait_timeout": (parse.positive_int, "ms to wait for those replicas before answering unavailable"),
    "shutdown_timeout": (parse.non_negative_float, "seconds SIGTERM waits for connections to close"),
    "ping_interval": (parse.non_negative_float, "seconds between WebSocket pings (0: no pings)"),
    "ping_timeout": (parse.non_negative_float, "seconds a ping may go unanswered before the close"),
    "max_connections": (parse.positive_int, "WebSockets per process; beyond it a handshake gets 503"),
    "max_connections_per_client": (parse.positive_int, "WebSockets per client address; beyond it 429"),
    "max_http_connections_per_client": (
        parse.optional_count,
        "open HTTP connections per client address (the proxy's not counted); beyond it closed at once; 0: no cap",
    ),
    "room_ttl": (parse.non_negative_float, "seconds after a room's last message before it is freed (0: never)"),
    "history_bytes": (
        parse.size,
        "bytes of message text a room retains at most, besides --retention; the oldest go first, "
        "the newest is always kept (k, m, g: 1024-based; 0: no bound)",
    ),
    "memory_budget": (
        parse.size,
        "bytes of message text the in-process bus retains over all rooms; past it the least recently "
        "written rooms lose their history first (k, m, g: 1024-based; 0: no bound; Redis: its maxmemory)",
    ),
    "client_rate_limit": (parse.non_negative_float, "frames per second per client address; 0 turns it off"),
    "client_rate_burst": (parse.positive_int, "burst of the per-address rate limit"),
    "join_rate": (parse.non_negative_float, "WebSocket handshakes per second per address or user; beyond it 429"),
    "join_burst": (parse.positive_int, "burst of the join rate"),
    "room_create_rate": (parse.non_negative_float, "new rooms per minute per address or user; beyond it 429"),
    "replay_rate": (parse.non_negative_int, "history bytes per second replayed to one address or user; 0: unpaced"),
    "replay_burst": (parse.positive_int, "history bytes replayed to one address or user before that pace applies"),
    "header_timeout": (parse.non_negative_float, "seconds for request headers and idle keep-alive"),
    "max_body_bytes": (parse.positive_int, "largest HTTP request body in bytes"),
    "allowed_hosts": (parse.hosts, "comma-separated Host names served (DNS rebinding guard); * for any"),
    "run_as": (parse.text, "when started as root, become this user once listening"),
    "token_secret": (parse.secret, "refused here: set CHAT_TOKEN_SECRET, or use --token-secret-file"),
    "token_secret_file": (parse.text, "file holding the HS256 key of the host site's tokens (token mode)"),
    "token_public_key": (parse.text, "PEM file of the public key of the host site's tokens: RS256, ES256, EdDSA"),
    "token_jwks_url": (parse.http_url, "URL of the host site's JWKS (keys chosen by kid)"),
    "token_audience": (parse.text, "tokens must carry this aud"),
    "token_issuer": (parse.text, "tokens must carry this iss"),
    "token_cookie": (parse.cookie_name, "cookie that may carry the token"),
    "auth_timeout": (parse.non_negative_float, "seconds for the first frame to bring a token"),
    "private_rooms": (parse.room_patterns, "comma-separated room names (* wildcards) a token must grant"),
    "token_refresh_url": (parse.refresh_url, "the host site's URL the room page gets fresh tokens from"),
    "api_port": (parse.optional_port, "port of the server API (the host application's backend); 0: any free port"),
    "api_host": (parse.text, "address the server API listens on"),
    "api_keys": (parse.api_keys, "refused here: set CHAT_API_KEYS (comma-separated) or api_keys in a config file"),
    "api_rate_limit": (parse.non_negative_float, "server API requests per second per key; 0 turns it off"),
    "api_rate_burst": (parse.positive_int, "burst of the server API's per-key rate limit"),
    "status_interval": (
        parse.positive_float,
        "seconds between this process's status records (in Redis: server.py status, the admin page)",
    ),
    "data_file": (parse.text, "SQLite file where the in-process bus keeps every room's history across restarts"),
    "commit_window": (parse.non_negative_float, "ms --data-file gathers messages into one commit, each acked after it"),
    "metrics_interval": (
        parse.positive_float,
        "seconds between samples of reader lag and the busiest rooms for /metrics",
    ),
    "metrics_top_rooms": (
        parse.non_negative_int,
        "busiest rooms given figures of their own (a room label) in /metrics",
    ),
}
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
