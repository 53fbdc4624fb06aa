"""The layout's rules, checked on the source: who may import whom, no import cycle, how big a module gets.

The data path is the spine: handlers speak WebSocket and HTTP and see the bus
only through its interface; the bus knows nothing of Tornado, the handlers,
the operator tools or the settings; only the Redis package speaks to Redis.
``telemetry/`` (metrics, status records) sees the bus, not the handlers;
``runtime/`` wires the parts together and may import anything but the
operator tools; ``server.py`` is the entry point.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tornado

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 320  # "about 300": a module a reader takes in at one sitting
# The server's code: every module under these, and server.py.
SERVER_PACKAGES = ("api", "bus", "clients", "config", "handlers", "ops", "runtime", "scripts", "telemetry")
# The modules over MAX_MODULE_LINES when the rule came, at most as long as they
# were then. The list only shrinks: a module split below the limit comes off it,
# and none may be added (split the module instead).
# Raised once, by the operator metrics (two settings; join, replay, close and
# slow-drop reports; the sampler's wiring; the Prometheus targets file).
OVER_THE_LIMIT: dict[str, int] = {}

# package -> module prefixes it must not import (a prefix matches the module and its submodules)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bus": ("tornado", "handlers", "ops", "config", "server", "runtime", "telemetry"),
    "config": ("bus", "handlers", "ops", "server", "tornado", "runtime", "telemetry"),
    # The socket reports through a protocol (handlers/socket_metrics.py), never the telemetry package.
    "handlers": ("redis", "bus.redis", "bus.memory", "ops", "server", "api", "runtime", "telemetry"),
    # The server API is another edge, like the handlers: rooms through the RoomBus only.
    "api": ("redis", "bus.redis", "bus.memory", "ops", "server", "runtime", "telemetry"),
    # What a process tells about itself: it reads the bus, and is wired in by runtime/.
    "telemetry": ("redis", "handlers", "api", "ops", "server", "runtime", "config"),
    # The wiring: everything the process runs, nothing of the operator tools or the entry point.
    "runtime": ("redis", "ops", "server"),
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
        for folder in ("bus", "handlers", "config", "ops", "api", "runtime", "telemetry")
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


def server_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the server (a package by its __init__.py)."""
    files = [path for package in SERVER_PACKAGES for path in python_files(package)] + [ROOT / "server.py"]
    modules = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def module_lines() -> dict[str, int]:
    return {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in server_modules().values()}


def test_no_module_is_over_about_300_lines_but_the_known_ones_which_only_shrink() -> None:
    sizes = module_lines()
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES and name not in OVER_THE_LIMIT} == {}
    grown = {name: (sizes.get(name), most) for name, most in OVER_THE_LIMIT.items() if sizes.get(name, 0) > most}
    assert grown == {}, "a module on the list grew: split it rather than raise its number"
    done = [name for name in OVER_THE_LIMIT if sizes.get(name, 0) <= MAX_MODULE_LINES]
    assert done == [], "now within the limit (or gone): take it off OVER_THE_LIMIT"


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the server modules it imports (``from a.b import c`` is a.b.c if that is a module, else a.b)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_two_modules_import_each_other_even_through_others() -> None:
    """Lazy imports inside functions count too: a cycle is a knot a reader must untie whichever way it is tied."""
    assert import_cycles(import_graph(server_modules())) == []


def test_the_cycle_rule_sees_a_planted_cycle(tmp_path: Path) -> None:
    """A cycle of three planted modules (one import lazy, one through a package) is found, and only it."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import thing\n")
    (tmp_path / "pkg" / "b.py").write_text("import pkg.c\nimport os\n")
    (tmp_path / "pkg" / "c.py").write_text("def f() -> None:\n    from pkg import a\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg import a\n")
    modules = {f"pkg.{name}": tmp_path / "pkg" / f"{name}.py" for name in "abcd"}
    modules["pkg"] = tmp_path / "pkg" / "__init__.py"
    assert import_cycles(import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.c"]]
    (tmp_path / "pkg" / "c.py").write_text("import os\n")
    assert import_cycles(import_graph(modules)) == []


def test_one_liveness_loop_and_one_retry_policy() -> None:
    """One heartbeat, one janitor, one call policy, one runner, in the Redis package."""
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in python_files("bus/redis")}
    assert [name for name, text in sources.items() if "scripts.beat(" in text] == ["bus/redis/liveness.py"]
    assert [name for name, text in sources.items() if "async def call(" in text] == ["bus/redis/client.py"]
    assert [name for name, text in sources.items() if "class Runner" in text] == ["bus/redis/client.py"]
    assert [name for name, text in sources.items() if "class Health" in text] == ["bus/redis/health.py"]


# ---- Tornado's private names: only in the package that owns the WebSocket connection ----------------
TORNADO_SEAM = "handlers/websocket/"
# The package's own tests look at what it relies on; this file names the names it looks for.
SEAM_TESTS = ("tests/test_websocket_", "tests/test_layout.py")
# Names with a leading underscore that are public API elsewhere (namedtuple's), which Tornado's source also uses.
NOT_PRIVATE = {"_replace", "_asdict", "_fields", "_make"}

_PRIVATE = r"_[A-Za-z]\w*"
_ATTRIBUTE = re.compile(rf"\.({_PRIVATE})\b")
_QUOTED = re.compile(rf"""\b(?:get|has|set|del)attr\([^,()]+,\s*["']({_PRIVATE})["']""")  # getattr(x, "_name")
_FROM_TORNADO = re.compile(r"^[ \t]*from[ \t]+tornado[\w.]*[ \t]+import[ \t]+(\([^)]*\)|[^\n]+)", re.M)
_TORNADO_DOTTED = re.compile(rf"\btornado(?:\.\w+)*\.({_PRIVATE})\b")
_DEFINED = re.compile(
    rf"(?:\bself\.({_PRIVATE})\s*(?::[^=\n]+)?=(?!=)|\bdef ({_PRIVATE})\b|^[ \t]*({_PRIVATE})\s*[:=])", re.M
)


def tornado_private_names() -> set[str]:
    """Every private name in Tornado's source (module, class and instance attributes; dunders aside)."""
    names: set[str] = set()
    for path in Path(tornado.__file__).parent.rglob("*.py"):
        names.update(re.findall(rf"\b({_PRIVATE})", path.read_text()))
    return {name for name in names if not name.startswith("__")} - NOT_PRIVATE


def defined_names(source: str) -> set[str]:
    """Private names a module defines for itself: ``self._x = ``, ``def _x``, a module or class level ``_x =``."""
    return {name for groups in _DEFINED.findall(source) for name in groups if name}


def private_tornado_uses(source: str, tornado_names: set[str], own: set[str]) -> set[str]:
    """The private Tornado names ``source`` uses: imported from Tornado, or read as attributes, unless its own."""
    found = {name for name in _TORNADO_DOTTED.findall(source) if name.startswith("_")}
    for match in _FROM_TORNADO.finditer(source):
        imported = match.group(1).split("#")[0].strip("() \n").replace("\n", " ").split(",")
        found.update(name.split()[0] for name in imported if name.strip().startswith("_"))
    used = set(_ATTRIBUTE.findall(source)) | set(_QUOTED.findall(source))
    return found | (used & tornado_names) - own


def outside_the_seam() -> list[Path]:
    paths = [ROOT / "server.py"]
    for folder in ("api", "bench", "bus", "clients", "config", "examples", "handlers", "ops", "runtime", "scripts"):
        paths += python_files(folder)
    for folder in ("telemetry", "tests"):
        paths += python_files(folder)
    return [
        path
        for path in paths
        if not str(path.relative_to(ROOT)).startswith((TORNADO_SEAM, *SEAM_TESTS)) and "node_modules" not in path.parts
    ]


def test_no_private_tornado_name_outside_the_websocket_package() -> None:
    tornado_names = tornado_private_names()
    sources = {str(path.relative_to(ROOT)): path.read_text() for path in outside_the_seam()}
    own = set().union(*(defined_names(source) for source in sources.values()))
    offences = {
        name: sorted(uses)
        for name, source in sources.items()
        if (uses := private_tornado_uses(source, tornado_names, own))
    }
    assert offences == {}


def test_the_private_name_rule_sees_a_planted_use(tmp_path: Path) -> None:
    """Planted in a copy of a real module outside the package, each kind of use is found."""
    source = (ROOT / "handlers/room_socket.py").read_text()
    own = defined_names(source)
    tornado_names = tornado_private_names()
    assert private_tornado_uses(source, tornado_names, own) == set()
    planted = {
        "from tornado.util import _websocket_mask\n": {"_websocket_mask"},
        "from tornado.websocket import (\n    WebSocketHandler,\n    _WebSocketParams,\n)\n": {"_WebSocketParams"},
        "self.ws_connection._abort()\n": {"_abort"},
        "server._sockets[fd] = sock\n": {"_sockets"},
        "getattr(stream, '_read_buffer')\n": {"_read_buffer"},
        "tornado.websocket._default_max_message_size\n": {"_default_max_message_size"},
    }
    for line, names in planted.items():
        assert private_tornado_uses(source + line, tornado_names, own) == names, line


def test_the_guard_lists_every_private_name_the_websocket_package_uses() -> None:
    from handlers.websocket.guard import PRIVATE_NAMES
    from handlers.websocket.slots import HANDLER_SLOTS, PROTOCOL_SLOTS

    tornado_names = tornado_private_names()
    package = {str(p.relative_to(ROOT)): p.read_text() for p in python_files(TORNADO_SEAM)}
    own = set().union(*(defined_names(source) for source in package.values()))
    used = set().union(*(private_tornado_uses(source, tornado_names, own) for source in package.values()))
    assert {"_websocket_mask", "_abort", "_sockets", "_handle_connection"} <= used  # the rule sees them here
    assert used - set(PRIVATE_NAMES) - set(HANDLER_SLOTS) - set(PROTOCOL_SLOTS) == set()
