"""The layout's rules, checked on the source: who may import whom, and how big a bus module gets.

The data path is the spine: handlers speak WebSocket and HTTP and see the bus
only through its interface; the bus knows nothing of Tornado, the handlers,
the operator tools or the settings; only the Redis package speaks to Redis.
``server.py`` wires the parts together and may import anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_BUS_MODULE_LINES = 320  # "about 300": a module a reader takes in at one sitting

# package -> module prefixes it must not import (a prefix matches the module and its submodules)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bus": ("tornado", "handlers", "ops", "config", "server"),
    "config": ("bus", "handlers", "ops", "server", "tornado"),
    "handlers": ("redis", "bus.redis", "bus.memory", "ops", "server", "api"),
    # The server API is another edge, like the handlers: rooms through the RoomBus only.
    "api": ("redis", "bus.redis", "bus.memory", "ops", "server"),
}
# Only the Redis package (and the wiring) speaks to Redis.
REDIS_ONLY_IN = ("bus/redis/",)


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


# Import statements read with a regular expression, not with ast: CPython
# 3.11's ast is not thread-safe ("AST constructor recursion depth mismatch"
# when another thread of the test process parses at the same time).
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. ,\t]+)", re.M)
_FROM = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]+)", re.M)


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement names (``from a import b`` names ``a`` and ``a.b``); not relative ones."""
    source = path.read_text()
    found: set[str] = set()
    for match in _IMPORT.finditer(source):
        found.update(part.split()[0] for part in match.group(1).split(",") if part.strip())
    for match in _FROM.finditer(source):
        module, names = match.group(1), match.group(2).split("#")[0].strip("() \n")
        if module.startswith("."):
            continue
        found.add(module)
        found.update(f"{module}.{name.split()[0]}" for name in names.replace("\n", " ").split(",") if name.strip())
    return found


def matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_the_layout_allows(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(package)
        for module in sorted(imported_modules(path))
        for prefix in FORBIDDEN[package]
        if matches(module, prefix)
    ]
    assert offences == []


def test_only_the_redis_package_imports_redis() -> None:
    offences = [
        str(path.relative_to(ROOT))
        for folder in ("bus", "handlers", "config", "ops", "api")
        for path in python_files(folder)
        if any(matches(m, "redis") for m in imported_modules(path))
        and not str(path.relative_to(ROOT)).startswith(REDIS_ONLY_IN)
        and path.name != "redis_cluster.py"  # the local cluster launcher talks to its own nodes
    ]
    assert offences == []


def test_the_rules_see_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a planted import is found (so the rules above cannot pass vacuously)."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import tornado.web\nfrom bus.redis import RedisBroker\nfrom . import sibling\n"
        "def f() -> None:\n    from bus import (\n        frames,\n        memory,  # late\n    )\n"
    )
    modules = imported_modules(planted)
    assert {"tornado.web", "bus.redis", "bus.redis.RedisBroker", "bus", "bus.frames", "bus.memory"} == modules


def test_no_bus_module_is_over_about_300_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in python_files("bus")}
    assert {name: n for name, n in sizes.items() if n > MAX_BUS_MODULE_LINES} == {}


def test_one_liveness_loop_and_one_retry_policy() -> None:
    """One heartbeat, one janitor, one call policy, one runner, in the Redis package."""
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in python_files("bus/redis")}
    assert [name for name, text in sources.items() if "scripts.beat(" in text] == ["bus/redis/liveness.py"]
    assert [name for name, text in sources.items() if "async def call(" in text] == ["bus/redis/client.py"]
    assert [name for name, text in sources.items() if "class Runner" in text] == ["bus/redis/client.py"]
    assert [name for name, text in sources.items() if "class Health" in text] == ["bus/redis/health.py"]
