"""The docs stand alone and keep up with the code.

- Comments and docstrings point to docs/ or the README, never to documents a
  clone does not have (numbered sections or issues of outside texts).
- docs/protocol.md names every close code and reason, handshake status, error
  code and frame type the code has, found by scanning the code (so a new one
  fails here until documented).
- The README's folder table names every module of the server's packages.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from bus.message import CHANGE_KINDS, NOTICE_KINDS

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Folders (and files) whose comments must stand alone. bench/ is left out: its
# harness really lives outside the repo, and its scripts say where to get it.
COMMENTED = (
    "bus",
    "handlers",
    "api",
    "ops",
    "config",
    "clients",
    "scripts",
    "static",
    "templates",
    "tests",
    "server.py",
)
# The packages whose every module (in subfolders too) the README's folder table names.
PACKAGES = ("bus", "handlers", "api", "ops", "config", "clients", "runtime", "scripts", "telemetry")

# A citation of a document outside the repository. "section N" is fine after
# "RFC": a public standard, not a file the reader lacks.
_OUTSIDE = re.compile(
    r"\bissues? #?\d+|\bcontract\b|CONTRACT|\.\./shared|\bgoal \d+|(?<![\w.])(?:sections?|§) ?\d+[a-z]?\b",
    re.IGNORECASE,
)
_RFC_BEFORE = re.compile(r"RFC ?\d+[^\n]{0,40}$")
_LINE_COMMENT = {".lua": "--", ".sh": "#", ".toml": "#", ".conf": "#", ".js": "//", ".css": "/*", ".html": "<!--"}


def outside_citations(text: str) -> list[str]:
    """The citations of outside documents in a comment's text."""
    found = []
    for match in _OUTSIDE.finditer(text):
        if match.group(0).lower().startswith(("section", "§")) and _RFC_BEFORE.search(text[: match.start()]):
            continue
        found.append(match.group(0))
    return found


def python_comments(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every comment and docstring (a string standing as a statement) of Python source."""
    found: list[tuple[int, str]] = []
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
        elif token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            found.append((token.start[0], token.string))
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token.type
    return found


def other_comments(source: str, suffix: str) -> list[tuple[int, str]]:
    """``(line, text)`` of what follows a line-comment marker, and of block comments, in other languages."""
    marker = _LINE_COMMENT[suffix]
    found = []
    in_block = False
    for number, line in enumerate(source.splitlines(), 1):
        if suffix in (".js", ".css", ".html"):
            opener, closer = ("<!--", "-->") if suffix == ".html" else ("/*", "*/")
            if in_block or opener in line:
                found.append((number, line))
                in_block = (in_block or opener in line) and closer not in line.split(opener)[-1]
                continue
            if suffix == ".js" and "//" in line:
                found.append((number, line[line.index("//") :]))
        elif marker in line:
            found.append((number, line[line.index(marker) :]))
    return found


def comments_of(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return python_comments(source)
    return other_comments(source, path.suffix)


def commented_files() -> list[Path]:
    files: list[Path] = []
    for name in COMMENTED:
        top = ROOT / name
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        files += [p for p in candidates if p.suffix in (".py", *_LINE_COMMENT) and "node_modules" not in p.parts]
    return files


def test_comments_point_inside_the_repository() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {citation!r}"
        for path in commented_files()
        for line, text in comments_of(path)
        for citation in outside_citations(text)
    ]
    assert offences == []


def test_the_citation_check_finds_a_planted_citation_and_only_in_comments() -> None:
    planted = (
        '"""Frames of section 4b."""\n'
        "CODE = 1008  # see issue 9\n"
        'TEXT = "the contract says"  # a string in code is not a comment\n'
        "def f() -> None:\n"
        '    """As RFC 6455 says (section 5.5.1); the CONTRACT does not."""\n'
    )
    found = [citation for _, text in python_comments(planted) for citation in outside_citations(text)]
    assert found == ["section 4b", "issue 9", "CONTRACT"]
    lua = "local x = 1 -- contract section 7\nlocal y = 'issue 3'\n"
    assert [c for _, text in other_comments(lua, ".lua") for c in outside_citations(text)] == ["contract", "section 7"]
    assert len(commented_files()) > 50  # the scan sees the tree, not nothing


# ---- docs/protocol.md against the code -------------------------------------------


def _sources(*folders: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for f in folders for p in sorted((ROOT / f).rglob("*.py")))


# The server's own code, where it closes connections (server.py besides).
SERVER_CODE = ("handlers", "bus", "api", "ops", "runtime", "telemetry")


def close_codes_in_code() -> set[int]:
    """Close codes the server sends: ``CLOSE_* = N`` constants and literal codes passed to a close."""
    source = _sources(*SERVER_CODE) + (ROOT / "server.py").read_text(encoding="utf-8")
    codes = {int(n) for n in re.findall(r"\bCLOSE_[A-Z_]+\s*(?::\s*\w+\s*)?=\s*(\d{4})\b", source)}
    # A literal code as the first argument of anything that closes, refuses or fails a connection.
    called = r"\b\w*(?:close|refuse|fail|abort)\w*\(\s*(?:[\w.]+,\s*)?(?:code=)?([1-4]\d{3})\b"
    codes |= {int(n) for n in re.findall(called, source, re.IGNORECASE)}
    return codes


def close_reasons_in_code() -> set[str]:
    """Close reasons the server sends: literal reasons passed to a close, and the named ones (pings, token refusals)."""
    source = _sources(*SERVER_CODE) + (ROOT / "server.py").read_text(encoding="utf-8")
    reasons = set(re.findall(r"\b(?:(?i:\w*close\w*)|Refused)\(\s*[\w.]+,\s*(?:reason=)?\"([^\"]+)\"", source))
    constants = dict(re.findall(r"^([A-Z_]+)\s*=\s*\"([^\"]+)\"", source, re.M))
    # A token refusal's first argument is the close reason the client is told.
    named = set(re.findall(r"\bTokenRefused\(\s*([A-Z_]+)\b", source)) | {"PING_TIMED_OUT"}
    return reasons | {constants[name] for name in named if name in constants}


def handshake_statuses_in_code() -> set[int]:
    """HTTP statuses our code refuses a room WebSocket's handshake with (Tornado's 400, 403 and 426 are not here)."""
    handlers = ROOT / "handlers"
    refusing = ("socket_handshake.py", "token_gate.py")
    socket = "\n".join((handlers / name).read_text(encoding="utf-8") for name in refusing)
    statuses = {int(n) for n in re.findall(r"\bHTTPError\(\s*(\d{3})\b", socket)}
    statuses |= {int(n) for n in re.findall(r"\"status_code\":\s*(\d{3})\b", (handlers / "hosts.py").read_text())}
    statuses |= {int(n) for n in re.findall(r"\breturn (\d{3})\b", (handlers / "limits.py").read_text())}
    return statuses


def error_codes_in_code() -> set[str]:
    """Error codes a client can get: FrameError's and ChangeRefused's first arguments, and the Lua scripts' refusals."""
    source = _sources("handlers", "bus", "api")
    codes = set(re.findall(r"\b(?:FrameError|ChangeRefused)\(\s*\"(\w+)\"", source))
    lua = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "bus").rglob("*.lua")))
    return codes | set(re.findall(r"\{'refused', '(\w+)'", lua))


def frame_types_in_code() -> set[str]:
    """Frame types both ways: ``"type": "x"`` literals, the notice kinds, and the types the inbound parsers test."""
    source = _sources("handlers", "bus")
    types = set(re.findall(r"\"type\"\s*:\s*\"(\w+)\"", source))
    types |= set(re.findall(r"\bkind\s*==\s*\"(\w+)\"", (ROOT / "handlers" / "inbound.py").read_text()))
    for listed in re.findall(r"get\(\"type\"\)\s*(?:not )?in\s*\(([^)]*)\)", source):
        types |= set(re.findall(r"\"(\w+)\"", listed))
    return types | set(NOTICE_KINDS) | {"edited" if k == "edit" else "deleted" for k in CHANGE_KINDS}


def test_the_scans_find_what_the_code_is_known_to_have() -> None:
    """The scans are not vacuous: each finds what is known to be there today."""
    assert {1001, 1008, 1013, 4001, 4003} <= close_codes_in_code()
    assert {"bad_json", "bad_request", "message_too_long", "rate_limited", "unavailable", "muted"} <= (
        error_codes_in_code()
    )
    assert {"not_found", "not_allowed"} <= error_codes_in_code()
    assert {"too many refused frames", "server shutting down", "message too big", "ping timed out"} <= (
        close_reasons_in_code()
    )
    assert {"token required", "bad token", "token expired", "not allowed in this room"} <= close_reasons_in_code()
    assert {400, 404, 421, 429, 503} <= handshake_statuses_in_code()
    expected = {"message", "ready", "ack", "error", "presence", "join", "leave", "typing", "older", "edit", "delete"}
    assert expected | {"edited", "deleted", "refreshed", "auth", "refresh"} <= frame_types_in_code()


def test_the_protocol_page_names_every_close_code() -> None:
    codes = close_codes_in_code() | {1000, 1002, 1007, 1009}  # 1000: a client's close echoed; 1009: Tornado's, for size
    missing = [code for code in sorted(codes) if not re.search(rf"^\| {code} \|", PROTOCOL, re.M)]
    assert missing == []


def test_the_protocol_page_names_every_close_reason() -> None:
    """Each reason is in a close-code row, in backticks: 4003's three meanings differ by their reason only."""
    rows = "\n".join(re.findall(r"^\| [14]\d{3} \|.*$", PROTOCOL, re.M))
    missing = [reason for reason in sorted(close_reasons_in_code()) if f"`{reason}`" not in rows]
    assert missing == []


def test_the_protocol_page_names_every_handshake_status() -> None:
    statuses = handshake_statuses_in_code() | {400, 403, 426}  # Tornado's: not an upgrade, Origin, version
    missing = [status for status in sorted(statuses) if not re.search(rf"^\| {status} \|", PROTOCOL, re.M)]
    assert missing == []


def test_the_protocol_page_names_every_error_code() -> None:
    missing = [code for code in sorted(error_codes_in_code()) if not re.search(rf"^\| `{code}` \|", PROTOCOL, re.M)]
    assert missing == []


def test_the_protocol_page_names_every_frame_type() -> None:
    missing = [
        kind
        for kind in sorted(frame_types_in_code())
        if f'"type": "{kind}"' not in PROTOCOL and (f"| `{kind}` |" not in PROTOCOL)
    ]
    assert missing == []


# ---- the README's folder table -----------------------------------------------------


def folder_table() -> dict[str, str]:
    """The README's folder table: first cell (the folder, without backticks) -> the row."""
    table = README.split("| folder | what |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) > 2:
            rows[cells[1].strip().strip("`")] = row
    return rows


def test_the_readme_folder_table_names_every_module() -> None:
    """Each module is named in its folder's row or a parent's (``websocket/reader.py`` under ``handlers/``)."""
    rows = folder_table()
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py":
                continue
            named = False
            for folder, row in rows.items():
                if folder.endswith("/") and module.startswith(folder):
                    rest = module.removeprefix(folder)
                    named = named or f"`{rest}`" in row or f"`{rest.removesuffix('.py')}`" in row
            if not named:
                missing.append(module)
    assert missing == []


def test_the_readme_cites_nothing_outside_the_repository() -> None:
    assert "../shared" not in README and "CONTRACT" not in README
