"""The parsers of setting values: each takes the name a person knows the setting by and the raw value.

A parser returns the typed value or raises SettingsError naming the setting
and the value (never a secret's value). config/flags.toml says which setting
each parses.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, TypeVar

_Number = TypeVar("_Number", int, float)


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names both."""


def positive_int(name: str, raw: Any) -> int:
    return _at_least(name, raw, whole_number(name, raw), 1)


def non_negative_int(name: str, raw: Any) -> int:
    return _at_least(name, raw, whole_number(name, raw), 0)


def _at_least(name: str, raw: Any, value: _Number, least: float) -> _Number:
    """``value`` (parsed from ``raw``) when it is ``least`` or more; 0 reads "must not be negative"."""
    if value < least:
        rule = "must not be negative" if least == 0 else f"must be at least {least}"
        raise SettingsError(f"{name} {rule}, got {raw!r}")
    return value


def whole_number(name: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_SIZE_UNITS |= {"g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def size(name: str, raw: Any) -> int:
    """Bytes, as a whole number or with a binary unit: 1048576, 1024k, 1m, 256MiB (k, m, g are 1024-based)."""
    found = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(raw).lower())
    if found is None or found.group(2) not in _SIZE_UNITS:
        raise SettingsError(f"{name} must be a size in bytes (a whole number, or with k, m or g), got {raw!r}")
    return int(found.group(1)) * _SIZE_UNITS[found.group(2)]


def redis_prefix(name: str, raw: Any) -> str:
    text = str(raw)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise SettingsError(f"{name} must be 1 to 64 of A-Z a-z 0-9 _ . -, got {raw!r}")
    return text


def non_negative_float(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    return _at_least(name, raw, value, 0)


def positive_float(name: str, raw: Any) -> float:
    """A period: 0.05 s at least (each tick costs Redis a write)."""
    return _at_least(name, raw, non_negative_float(name, raw), 0.05)


def boolean(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def text(name: str, raw: Any) -> str:
    return str(raw)


MIN_SECRET_BYTES = 32


def secret(name: str, raw: Any) -> str:
    text = str(raw)
    if text and len(text.encode()) < MIN_SECRET_BYTES:
        # The value itself is not repeated: it is a secret, even when too short.
        raise SettingsError(f"{name} must be at least {MIN_SECRET_BYTES} bytes (got {len(text.encode())})")
    return text


def port(name: str, raw: Any) -> int:
    value = whole_number(name, raw)
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be a TCP port (0-65535), got {raw!r}")
    return value


def log_format(name: str, raw: Any) -> str:
    if raw not in ("json", "console", ""):
        raise SettingsError(f"{name} must be 'json' or 'console', got {raw!r}")
    return str(raw)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level(name: str, raw: Any) -> str:
    text = str(raw).strip().lower()
    if text not in _LOG_LEVELS:
        raise SettingsError(f"{name} must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return text


def event_loop(name: str, raw: Any) -> str:
    if raw not in ("uvloop", "asyncio"):
        raise SettingsError(f"{name} must be 'uvloop' or 'asyncio', got {raw!r}")
    return str(raw)


def origins(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    origins = tuple(str(item).strip().rstrip("/").lower() for item in items if str(item).strip())
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise SettingsError(f"{name} entries must look like scheme://host[:port], got {origin!r}")
    return origins


def hosts(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    hosts = tuple(str(item).strip().lower() for item in items if str(item).strip())
    for host in hosts:
        if "/" in host or " " in host:
            raise SettingsError(f"{name} entries must be host names (or *), got {host!r}")
    return hosts


def allow_ips(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    entries = tuple(str(item).strip() for item in items if str(item).strip())
    for entry in entries:
        try:
            entry == "*" or ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"{name} entries must be IP addresses, networks or *, got {entry!r}") from None
    return entries


def room_patterns(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    patterns = tuple(str(item).strip() for item in items if str(item).strip())
    for pattern in patterns:
        if not re.fullmatch(r"[\w*]{1,100}", pattern):
            raise SettingsError(f"{name} entries must be room names with * wildcards, got {pattern!r}")
    return patterns


def http_url(name: str, raw: Any) -> str:
    text = str(raw).strip()
    if text and not text.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return text


def refresh_url(name: str, raw: Any) -> str:
    text = str(raw).strip()
    if text and not text.startswith(("/", "http://", "https://")) or text.startswith("//"):
        raise SettingsError(f"{name} must be a path of this site (/...) or an http(s) URL, got {raw!r}")
    return text


def cookie_name(name: str, raw: Any) -> str:
    text = str(raw)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise SettingsError(f"{name} must be a cookie name (1 to 64 of A-Z a-z 0-9 _ . -), got {raw!r}")
    return text


def optional_count(name: str, raw: Any) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    return non_negative_int(name, raw)


def optional_port(name: str, raw: Any) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    return port(name, raw)


def api_keys(name: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    keys = tuple(str(item).strip() for item in items if str(item).strip())
    for key in keys:
        secret(name, key)  # each at least MIN_SECRET_BYTES; the value is never repeated
    return keys


def redis_url(name: str, raw: Any) -> str | None:
    text = str(raw).strip()
    if not text:
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{name} must be a redis://, rediss:// or unix:// URL")
    return text
