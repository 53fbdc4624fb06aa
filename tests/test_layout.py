"""The layout's rules, checked on the source (issue 8): who may import whom, and how big a bus module gets.

The data path is the spine: handlers speak WebSocket and HTTP and see the bus
only through its interface; the bus knows nothing of Tornado, the handlers,
the operator tools or the settings; only the Redis package speaks to Redis.
``server.py`` wires the parts together and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_BUS_MODULE_LINES = 320  # "about 300": a module a reader takes in at one sitting

# package -> module prefixes it must not import (a prefix matches the module and its submodules)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bus": ("tornado", "handlers", "ops", "config", "server"),
    "config": ("bus", "handlers", "ops", "server", "tornado"),
    "handlers": ("redis", "bus.redis", "bus.memory", "ops", "server"),
}
# Only the Redis package (and the wiring) speaks to Redis.
REDIS_ONLY_IN = ("bus/redis/",)


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
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
        for folder in ("bus", "handlers", "config", "ops")
        for path in python_files(folder)
        if any(matches(m, "redis") for m in imported_modules(path))
        and not str(path.relative_to(ROOT)).startswith(REDIS_ONLY_IN)
        and path.name != "redis_cluster.py"  # the local cluster launcher talks to its own nodes
    ]
    assert offences == []


def test_the_rules_see_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a planted import is found (so the rules above cannot pass vacuously)."""
    planted = tmp_path / "planted.py"
    planted.write_text("import tornado.web\nfrom bus.redis import RedisBroker\nfrom . import sibling\n")
    modules = imported_modules(planted)
    assert any(matches(m, "tornado") for m in modules) and any(matches(m, "bus.redis") for m in modules)


def test_no_bus_module_is_over_about_300_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in python_files("bus")}
    assert {name: n for name, n in sizes.items() if n > MAX_BUS_MODULE_LINES} == {}


def test_one_liveness_loop_and_one_retry_policy() -> None:
    """Issue 8: one heartbeat, one janitor, one call policy, one runner, in the Redis package."""
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in python_files("bus/redis")}
    assert [name for name, text in sources.items() if "scripts.beat(" in text] == ["bus/redis/liveness.py"]
    assert [name for name, text in sources.items() if "async def call(" in text] == ["bus/redis/client.py"]
    assert [name for name, text in sources.items() if "class Runner" in text] == ["bus/redis/client.py"]
    assert [name for name, text in sources.items() if "class Health" in text] == ["bus/redis/health.py"]
